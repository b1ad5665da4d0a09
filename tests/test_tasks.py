"""Tasks: every program equals its plain-Python reference; counterfactuals obey their laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tasks
from tasks import Aggregate, Indices, Map, Program, Select, Tokens, strategies
from tasks.interpreter import counterfactual, replaced

from .reference_interpreter import evaluate

NAMES = tasks.names()
MANY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_registry_holds_at_least_a_dozen_tasks_with_docs():
    assert len(NAMES) >= 12
    for name in NAMES:
        task = tasks.get(name)
        assert task.name == name and "Planted algorithm" in task.doc


@pytest.mark.parametrize("name", NAMES)
def test_program_equals_reference(name):
    """>= 500 generated inputs per task, every length up to max_len."""
    task = tasks.get(name)

    @MANY
    @given(strategies.inputs(task))
    def check(tokens):
        seq = tokens[0].tolist()
        expected = task.reference(seq)
        targets = task.targets(tokens)[0]
        got = [task.classes[c] if c != tasks.IGNORE else None for c in targets]
        assert got == expected, f"input {seq}"

    check()


@pytest.mark.parametrize("name", NAMES)
def test_vectorised_interpreter_equals_reference_interpreter_under_interventions(name):
    task = tasks.get(name)

    @SOME
    @given(strategies.interventions(task, max_size=4))
    def check(case):
        base, source, variable, position = case
        values, _ = counterfactual(task.program, base, source, [(variable, position)])
        for i in range(base.shape[0]):
            src = evaluate(task.program, source[i].tolist())
            j = int(position[i])
            slow = evaluate(task.program, base[i].tolist(), {(variable, j): src[variable][j]})
            for v in task.program.names:
                assert values[v][i].tolist() == slow[v], (v, base[i].tolist(), source[i].tolist(), variable, j)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_replacing_a_variable_at_many_positions_equals_the_reference_interpreter(name):
    """``replaced`` (a per-position variable taken from the source wherever a mask says) against
    the plain-Python interpreter given every replaced position, and, on one position, against
    ``counterfactual``."""
    task = tasks.get(name)
    per_position = [v.name for v in task.program if v.per_position]

    @SOME
    @given(strategies.pairs(task, max_size=3), st.sampled_from(per_position), st.data())
    def check(pair, variable, data):
        base, source = pair
        n, L = base.shape
        where = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=L, max_size=L), min_size=n, max_size=n)), dtype=bool)
        values, counts = replaced(task.program, base, source, variable, where)
        for i in range(n):
            src = evaluate(task.program, source[i].tolist())
            patches = {(variable, int(j)): src[variable][int(j)] for j in np.flatnonzero(where[i])}
            slow = evaluate(task.program, base[i].tolist(), patches)
            for v in task.program.names:
                assert values[v][i].tolist() == slow[v], (v, variable, base[i].tolist(), source[i].tolist(), where[i].tolist())
            first = int(np.argmax(where[i])) if where[i].any() else L
            assert counts[i].tolist() == [t >= first for t in range(L)]
        j = data.draw(st.integers(0, L - 1))
        one = np.zeros_like(where)
        one[:, j] = True
        a, b = task.replaced(base, source, variable, one), task.counterfactual(base, source, variable, j)
        assert np.array_equal(a.outputs, b.outputs) and np.array_equal(a.mask, b.mask)

    check()


def test_replacing_an_aggregate_at_many_positions_is_refused():
    task = tasks.get("parity")
    base = task.sample(2, seed=0).tokens
    with pytest.raises(ValueError, match="mixes positions"):
        replaced(task.program, base, base, "ones", np.ones_like(base, dtype=bool))


@pytest.mark.parametrize("name", NAMES)
def test_intervening_with_the_base_itself_changes_nothing(name):
    task = tasks.get(name)

    @SOME
    @given(strategies.interventions(task))
    def check(case):
        base, _, variable, position = case
        cf = task.counterfactual(base, base, variable, position)
        targets = task.targets(base)
        assert np.array_equal(np.where(cf.mask, cf.outputs, 0), np.where(cf.mask, targets, 0))

    check()


@pytest.mark.parametrize("name", NAMES)
def test_intervening_on_the_output_returns_the_source_output(name):
    task = tasks.get(name)
    out = task.output.name

    @SOME
    @given(strategies.pairs(task))
    def check(pair):
        base, source = pair
        n, L = base.shape
        readout = task.readout_mask(base)
        for j in range(L):
            cf = task.counterfactual(base, source, out, j)
            src_vals = task.run(source)[out][:, j]
            assert np.array_equal(cf.values[out][:, j], src_vals)
            assert np.array_equal(cf.mask[:, j], readout[:, j])
            # nothing reads the output, so every other position keeps the base's output
            others = np.arange(L) != j
            assert np.array_equal(cf.values[out][:, others], task.run(base)[out][:, others])

    check()


@pytest.mark.parametrize("name", NAMES)
def test_outputs_before_the_intervention_are_unchanged(name):
    """Causality: an intervention at j cannot move an output at t < j (and those don't count)."""
    task = tasks.get(name)

    @SOME
    @given(strategies.interventions(task))
    def check(case):
        base, source, variable, position = case
        cf = task.counterfactual(base, source, variable, position)
        before = np.arange(base.shape[1])[None, :] < position[:, None]
        assert not (cf.mask & before).any()
        assert np.array_equal(cf.values[task.output.name][before], task.run(base)[task.output.name][before])

    check()


def test_intervening_on_a_variable_the_output_ignores_changes_nothing():
    tokens = Tokens(("BOS", "a", "b"))
    ignored = Map(lambda x: x == 2, tokens, name="ignored")
    first = Map(lambda x: x == 1, tokens, name="is_a")
    keep = Map(lambda a, _b: a, first, ignored, name="keep")
    count = Aggregate(Select.all(), keep, "count", name="count", max_len=8)
    program = Program(count)
    rng = np.random.default_rng(0)
    base, source = rng.integers(1, 3, (50, 8)), rng.integers(1, 3, (50, 8))
    base[:, 0] = source[:, 0] = 0
    for j in range(8):
        values, _ = counterfactual(program, base, source, [("ignored", j)])
        assert np.array_equal(values["count"], tasks.run(program, base)["count"])
        values, _ = counterfactual(program, base, source, [("is_a", j)])
        changed = values["count"] != tasks.run(program, base)["count"]
        assert changed[:, j:].any() or np.array_equal(base[:, j] == 1, source[:, j] == 1)


def test_protocol_masks_aggregate_interventions_to_their_own_position():
    task = tasks.get("parity")
    sample = task.sample(8, seed=3)
    cf = task.counterfactual(sample.tokens, sample.tokens[::-1], "ones", 5)
    assert cf.mask[:, 5].all() and not cf.mask[:, :5].any() and not cf.mask[:, 6:].any()
    cf = task.counterfactual(sample.tokens, sample.tokens[::-1], "is_one", 5)
    assert cf.mask[:, 5:].all() and not cf.mask[:, :5].any()
    cf = task.counterfactual(sample.tokens, sample.tokens[::-1], ["is_one", "ones"], [3, 7])
    assert cf.mask[:, 3:8].all() and not cf.mask[:, 8:].any() and not cf.mask[:, :3].any()


def test_several_interventions_at_once_equal_the_reference_interpreter():
    task = tasks.get("dyck1")
    base, source = task.sample(20, seed=1).tokens, task.sample(20, seed=2).tokens
    cf = task.counterfactual(base, source, ["step", "depth"], [2, 6])
    for i in range(20):
        src = evaluate(task.program, source[i].tolist())
        slow = evaluate(task.program, base[i].tolist(), {("step", 2): src["step"][2], ("depth", 6): src["depth"][6]})
        assert cf.values["status"][i].tolist() == slow["status"]


@given(st.sampled_from(NAMES))
@settings(max_examples=len(NAMES) * 2, deadline=None)
def test_building_a_program_twice_gives_the_same_names(name):
    task = tasks.get(name)
    first, second = task.build(task.max_len), task.build(task.max_len)
    assert first.names == second.names
    assert [v.value_set for v in first] == [v.value_set for v in second]
    assert len(set(first.names)) == len(first.names)


@pytest.mark.parametrize("name", NAMES)
def test_sampler_is_seeded_and_balanced(name):
    task = tasks.get(name)
    a, b, c = task.sample(300, seed=7), task.sample(300, seed=7), task.sample(300, seed=8)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.targets, b.targets)
    assert not np.array_equal(a.tokens, c.tokens)
    labels = a.targets[a.targets != tasks.IGNORE]
    share = np.bincount(labels, minlength=task.n_classes) / labels.size
    assert share.max() < 0.6, f"the most common class holds {share.max():.0%} of the targets"
    assert (share > 0).sum() >= min(task.n_classes, 3)


@pytest.mark.parametrize("name", NAMES)
def test_generated_inputs_are_valid_and_reach_max_len(name):
    task = tasks.get(name)

    @settings(max_examples=30, deadline=None)
    @given(strategies.batches(task, length=task.max_len))
    def check(tokens):
        assert tokens.shape[1] == task.max_len
        task.validate(tokens)
        assert task.readout_mask(tokens).any()

    check()


def test_token_outside_vocabulary_names_the_value_and_the_limit():
    task = tasks.get("parity")
    with pytest.raises(ValueError, match=r"token id 7 .*valid ids 0\.\.2"):
        task.targets([[0, 1, 7]])
    with pytest.raises(ValueError, match=r"token id -1"):
        task.run([[0, -1]])


def test_sequence_longer_than_max_len_names_the_length_and_the_limit():
    task = tasks.get("parity")
    with pytest.raises(ValueError, match=r"length 17 exceeds .*max_len 16"):
        task.targets(np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(ValueError, match=r"length 40 must be within"):
        task.sample(2, length=40)


def test_unknown_task_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown task 'partiy'.*did you mean parity"):
        tasks.get("partiy")


def test_encode_names_an_unknown_token():
    with pytest.raises(ValueError, match=r"token 'x' is not in task 'parity'"):
        tasks.get("parity").encode(["0", "x"])
    assert tasks.get("parity").encode(["1", "0"]).tolist() == [[0, 2, 1]]


def test_with_max_len_rebuilds_value_sets():
    short, long = tasks.get("count", max_len=6), tasks.get("count", max_len=20)
    assert short.output.value_set.hi == 6 and long.output.value_set.hi == 20
    assert long.sample(4, length=20).tokens.shape == (4, 20)


def test_indices_is_categorical_and_sum_rejects_categorical_inputs():
    from tasks import Sum

    idx = Indices(5)
    assert idx.value_set.values == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="categorical"):
        Sum(idx, name="bad")
    with pytest.raises(ValueError, match="default"):
        Aggregate(Select.offset_by(1), idx, "last", name="no_default")
