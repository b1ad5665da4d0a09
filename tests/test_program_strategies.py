"""Random programs (tasks.strategies.programs) and random models (zoo.strategies.models)."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import tasks
import zoo
from tasks import strategies
from tasks.program import REDUCTIONS
from tasks.spec import SELECTS, Node, ProgramSpec, spec_of
from zoo.strategies import models
from zoo.support import primitive_of

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FIND = settings(max_examples=2000, database=None)


def primitives_in(task) -> set[str]:
    return {primitive_of(v) for v in task.program if v.op not in ("tokens",)} | ({"Indices"} if any(v.op == "indices" for v in task.program) else set())


@SETTINGS
@given(strategies.programs())
def test_drawn_programs_are_well_formed_tasks(task):
    program = task.program
    assert program.output is program.variables[-1] or program.output in program.variables
    for v in program:
        assert v.value_set.size <= strategies.MAX_VALUES and max(abs(v.value_set.lo), abs(v.value_set.hi)) <= strategies.MAX_ABS
    sample = task.sample(8, seed=0)
    assert sample.tokens.shape == (8, task.max_len) and (sample.tokens[:, 0] == tasks.BOS).all()
    readout = sample.targets != tasks.IGNORE
    assert readout.any(axis=1).all(), "every input has an output to read"
    if task.mode == tasks.SEQ2SEQ:  # one SEP per input, in 2..sep_position(L), as Task.random_inputs places it
        is_sep = sample.tokens == task.sep
        assert (is_sep.sum(axis=1) == 1).all() and (2 <= is_sep.argmax(axis=1)).all() and (is_sep.argmax(axis=1) <= task.sep_position(task.max_len)).all()
    seq = sample.tokens[0].tolist()  # the reference is the interpreter, position by position
    expected = [task.classes[c] if c != tasks.IGNORE else None for c in sample.targets[0]]
    assert task.reference(seq) == expected


@SETTINGS
@given(strategies.program_specs())
def test_specs_round_trip_through_json_and_rebuild_the_same_program(spec):
    again = ProgramSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec and again.name == spec.name
    a, b = spec.task(), again.task()
    assert a.program.describe() == b.program.describe()
    tokens = a.sample(16, seed=3).tokens
    assert np.array_equal(a.targets(tokens), b.targets(tokens))
    assert spec_of(a) == spec and spec_of(tasks.get("parity")) is None


def _drawn(n: int) -> set:
    seen: set = set()

    @settings(max_examples=n, deadline=None, database=None, derandomize=True, phases=[Phase.generate])
    @given(strategies.programs())
    def collect(task):
        seen.update(primitives_in(task) | {task.mode})

    collect()
    return seen


def test_every_primitive_selection_reduction_and_io_mode_is_drawn():
    seen = _drawn(400)
    aggregates = {tuple(p[10:-1].split("/")) for p in seen if p.startswith("Aggregate[")}
    wanted = {"Map", "Sum", "Indices", "Scan", tasks.TRANSDUCTION, tasks.SEQ2SEQ}
    assert not wanted - seen, f"never drawn in 400 programs: {sorted(wanted - seen)}"
    assert {s for s, _ in aggregates} == set(SELECTS) and {r for _, r in aggregates} == set(REDUCTIONS)


@pytest.mark.slow
def test_every_selection_reduction_pair_is_drawn():
    missing = set(strategies.AGGREGATES) - _drawn(3000)
    assert not missing, f"never drawn in 3000 programs: {sorted(missing)}"


def test_shrinking_goes_to_fewer_nodes_fewer_symbols_and_shorter_inputs():
    """The smallest program holding a key == query 'last' whose output has four values: the
    aggregate alone over a Map of the tokens, one symbol short of four, at the shortest length."""

    def wanted(task):
        out = task.program.output
        return primitive_of(out) == "Aggregate[eq/last]" and out.value_set.size >= 4

    task = find(strategies.programs(max_nodes=4, primitives=("Map", "Sum", "Aggregate[eq]")), wanted, settings=FIND, random=random.Random(1))
    spec = spec_of(task)
    assert len(task.program) <= 3, task.program.describe()
    assert task.mode == tasks.TRANSDUCTION and task.max_len == 2 and spec.symbols <= 3


@SETTINGS
@given(strategies.programs(primitives=("Map", "Aggregate[all]"), modes=(tasks.SEQ2SEQ,), max_symbols=2, max_len=5))
def test_primitives_modes_and_sizes_restrict_the_draw(task):
    assert primitives_in(task) <= {"Map"} | {p for p in strategies.AGGREGATES if p.startswith("Aggregate[all/")}
    assert task.mode == tasks.SEQ2SEQ and 3 <= task.max_len <= 5 and len(task.alphabet) <= 2


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown primitive 'Aggregate\\[ne\\]'"):
        strategies.programs(primitives=("Aggregate[ne]",))
    with pytest.raises(ValueError, match="leave nothing to compute"):
        strategies.programs(primitives=("Indices",))
    with pytest.raises(ValueError, match="mode 'both'"):
        strategies.programs(modes=("both",))
    with pytest.raises(ValueError, match="node 1 \\(map\\) reads \\[1\\]"):
        ProgramSpec(2, 4, nodes=(Node("map", (1,), coefs=(1,), table=(0, 1)),))
    with pytest.raises(ValueError, match="unknown kind 'trained'"):
        models(kinds=("trained",))
    with pytest.raises(ValueError, match="unknown architecture 'lstm'"):
        models(archs=("lstm",))


def test_models_compile_counts_refusals_and_carry_ground_truth():
    stats: Counter = Counter()

    @settings(max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(models(strategies.programs(primitives=("Map", "Scan", "Aggregate[all]", "Aggregate[lt]")), stats=stats))
    def check(case):
        assert case.arch in zoo.FAMILIES and case.model.family == case.arch
        assert set(case.model.ground_truth.variables) == set(case.task.program.names)
        assert (case.kind == "reparametrized") == ("reparametrized" in case.model.meta)
        assert case.spec == spec_of(case.task)

    check()
    compiled = {f: stats[f, "compiled"] for f in zoo.FAMILIES}
    assert sum(compiled.values()) >= 20 and all(n >= 1 for n in compiled.values()), compiled
    refused = {k for k in stats if k[1] == "refused" and len(k) == 3}
    assert sum(stats[k] for k in refused) == sum(stats[f, "refused"] for f in zoo.FAMILIES), "every refusal counted by primitive"
