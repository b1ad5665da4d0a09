"""Decoys and the (component, position) ground truth on compiled and reparametrized models.

- a program with its decoy clone computes the same outputs, and the clone differs from the
  program where the relabelled token matters;
- decoys change no output: patching every decoy component with another input's activation, at
  every position, leaves every output as it was;
- a decoy's ground-truth location holds the decoy's value: patching it reproduces the program's
  counterfactual of the decoy output, read by the ground truth's decoy readout (IIA 1.0);
- the cells mean what they say: every component with a cell in the circuit changes some counted
  output when resample-ablated, every other component changes none;
- samplers exercise every variable (seq2seq SEP positions vary, so sort's positional variables do).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import tasks
import zoo
from tasks import strategies
from tasks.decoys import relabelling
from zoo import CompileError, patch
from zoo.ground_truth import POSITIVE

from .compiled_refusals import REFUSED

PAIRS = [(t, f) for t in tasks.names() for f in zoo.FAMILIES if (t, f) not in REFUSED]
KINDS = ("compiled", "reparametrized")


def quick(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def model(task_name: str, family: str, kind: str):
    m = zoo.compile(task_name, family, decoys=True)
    return zoo.reparametrize(m, seed=7) if kind == "reparametrized" else m


def predict(m, tokens, **kw):
    with torch.no_grad():
        res = m.run(torch.as_tensor(tokens), **kw)
    return res.logits.argmax(-1).numpy(), res.cache


@pytest.mark.parametrize("task_name", tasks.names())
def test_decoys_leave_the_function_alone_and_compute_something_else(task_name):
    plain, shadow = tasks.get(task_name), tasks.get(task_name).with_decoys()
    assert set(plain.program.names) < set(shadow.program.names) and shadow.program.decoy_names
    assert all(shadow.program[d].value_set == shadow.program[d[: -len("_decoy")]].value_set for d in shadow.program.decoy_names)
    sample = plain.sample(256, seed=3)
    assert (shadow.targets(sample.tokens) == sample.targets).all()
    relabel = relabelling(plain.vocab, plain.alphabet)
    assert relabel[tasks.BOS] == tasks.BOS and sorted(relabel.values()) == list(range(len(plain.vocab)))


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_decoy_components_change_no_output(task_name, family):
    for kind in KINDS:
        m = model(task_name, family, kind)
        gt = m.ground_truth
        decoy = [c for c in m.components if c.name in gt.cells and gt.component_variables[c.name]
                 and all(v in gt.decoys for v in gt.component_variables[c.name])]
        assert decoy, "every evaluated model has decoy components"
        task = tasks.get(task_name)

        @quick(6)
        @given(strategies.pairs(task, max_size=16))
        def check(pair):
            base, source = pair
            _, cache = predict(m, source, cache=list({c.site for c in decoy}))
            by_site = {}
            for c in decoy:
                by_site.setdefault(c.site, []).extend(c.units)
            got, _ = predict(m, base, interventions={s: patch(cache[s], units=u) for s, u in by_site.items()})
            targets = task.targets(base)
            mask = targets != tasks.IGNORE
            assert (got[mask] == targets[mask]).all()

        check()


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_a_decoy_location_holds_the_decoy(task_name, family):
    task = tasks.get(task_name).with_decoys()
    for kind in KINDS:
        m = model(task_name, family, kind)
        gt = m.ground_truth
        (out, readout), = gt.readouts.items()

        @quick(6)
        @given(strategies.interventions(task, max_size=16, variables=gt.decoys))
        def check(case):
            base, source, variable, position = case
            loc = gt.variables[variable]
            _, cache = predict(m, source, cache=[loc.site])
            fn = patch(cache[loc.site], positions=torch.as_tensor(position + loc.lag), basis=loc.tensor())
            _, got = predict(m, base, interventions={loc.site: fn}, cache=[readout.site])
            values, counted = tasks.interpreter.counterfactual(task.program, base, source, [(variable, position)])
            counted[:, 0] = False
            decoded = readout.decode(got[readout.site])
            assert (decoded[counted] == values[out][counted]).all()

        check()


def _effects(m, task, n: int = 96, seed: int = 0) -> dict[str, float]:
    """Share of counted outputs that resample-ablating each component (every position) changes
    (the patching engine's batched sweep, which tests/test_methods.py holds equal to one forward
    per patch)."""
    from methods.patching import ablation_sources, readout, sweep

    base, source = task.sample(n, seed=seed).tokens, task.sample(n, seed=seed + 1).tokens
    names = [c.name for c in m.components]
    sources = ablation_sources(m, task, base, list({c.site for c in m.components}), "resample", source=source)
    targets, mask = readout(task, base)
    with torch.no_grad():
        effects = sweep(m, base, sources, [(c, None) for c in names], targets=targets, mask=mask, kind="changed")
    return dict(zip(names, effects.tolist()))


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_circuit_components_matter_and_the_others_do_not(task_name, family):
    task = tasks.get(task_name)
    for kind in KINDS:
        m = model(task_name, family, kind)
        gt = m.ground_truth
        effects = _effects(m, task)
        positive = set(gt.positive_components())
        assert positive and positive < set(effects)
        idle = {c: e for c, e in effects.items() if c in positive and e == 0.0}
        assert not idle, f"components in the circuit that change no output: {idle}"
        moved = {c: e for c, e in effects.items() if c not in positive and e > 0.0}
        assert not moved, f"components outside the circuit that change outputs: {moved}"


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_every_family_has_negative_cells_and_names_say_nothing(task_name, family):
    m = model(task_name, family, "reparametrized")
    cells = np.concatenate([np.asarray(v) for v in m.ground_truth.cells.values()])
    assert (cells == POSITIVE).sum() >= 1 and (cells == 0).sum() >= 1
    names = [c.name for c in m.components]
    assert len(names) == len(set(names)) and set(names) == set(m.ground_truth.cells)
    assert all(not any(v in c for v in m.ground_truth.variables) for c in names)  # component names carry no variable


@pytest.mark.parametrize("task_name", tasks.names())
def test_samplers_exercise_every_variable(task_name):
    task = tasks.get(task_name).with_decoys()
    values = task.run(task.sample(512, seed=0).tokens)
    program = task.program
    for v in program.variables:
        x = values[v.name]
        assert len(np.unique(x)) >= 2, f"{v.name} takes one value"
        positional = program.tokens.name not in _ancestors(program, v.name)
        varies = (x != x[:1]).any(axis=0)[1:].any()
        assert positional or varies, f"{v.name} is the same in every input at every position"


def _ancestors(program, name: str) -> set[str]:
    out, todo = set(), [name]
    while todo:
        v = program[todo.pop()]
        for u in v.inputs:
            if u.name not in out:
                out.add(u.name)
                todo.append(u.name)
    return out


def test_a_compiler_refusal_still_names_the_family():
    for (task_name, family), primitive in REFUSED.items():
        with pytest.raises(CompileError, match=family):
            zoo.compile(task_name, family, decoys=True)
