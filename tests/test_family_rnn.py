"""The rnn family: its parametrisation, sites, fast path, reparametrisation and compiler.

The acceptance tests of every compiled (task, rnn) pair live in tests/test_compiled.py; here
the same three checks also run on reparametrised compiled models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tasks
import zoo
from tasks import strategies
from tasks.program import Aggregate, Program, Select, Tokens
from tasks.task import Task
from zoo import CompileError, patch
from zoo.families.rnn import RNN, RNNConfig, from_config, reparametrize

from .test_compiled import assert_matches, predict

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def models_and_tokens(draw):
    config = RNNConfig(
        vocab_size=draw(st.integers(2, 9)),
        n_classes=draw(st.integers(1, 6)),
        max_len=draw(st.integers(1, 12)),
        hidden_size=draw(st.integers(1, 24)),
        num_layers=draw(st.integers(1, 3)),
        embed_dim=draw(st.one_of(st.none(), st.integers(1, 10))),
    )
    model = from_config(config, seed=draw(st.integers(0, 2**16)))
    B, T = draw(st.integers(1, 5)), draw(st.integers(1, config.max_len))
    tokens = torch.as_tensor(draw(st.lists(st.integers(0, config.vocab_size - 1), min_size=B * T, max_size=B * T))).reshape(B, T)
    return model, tokens


@FAST
@given(models_and_tokens())
def test_fast_path_equals_tapped_path_and_torch_rnn(case):
    model, tokens = case
    with torch.no_grad():
        fast = model(tokens)
        tapped = model.forward_loop(tokens)
        names = [s.name for s in model.sites]
        cached = model.run(tokens, cache=names).cache  # fused kernel, states tapped whole
        identity = {s.name: (lambda x, pos: x) for s in model.sites if s.recurrent}
        looped = model.run(tokens, cache=names, interventions=identity).cache  # step by step
        out, _ = model.to_torch_rnn()(model.embed(tokens))
        reference = model.readout(out)
    assert fast.shape == (*tokens.shape, model.n_classes)
    torch.testing.assert_close(fast, tapped, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference, tapped, atol=1e-5, rtol=1e-5)
    for name in names:
        torch.testing.assert_close(cached[name], looped[name], atol=1e-5, rtol=1e-5)


def test_parameters_are_named_and_shaped_like_torch_rnn():
    model = from_config(RNNConfig(vocab_size=5, n_classes=3, max_len=8, hidden_size=7, num_layers=3, embed_dim=4), seed=0)
    reference = torch.nn.RNN(4, 7, num_layers=3, nonlinearity="relu", batch_first=True)
    ours = {n: p.shape for n, p in model.named_parameters() if "_l" in n}
    assert ours == {n: p.shape for n, p in reference.named_parameters()}
    assert [s.name for s in model.sites] == ["embed", "L0.hidden", "L1.hidden", "L2.hidden"]
    assert all(s.recurrent and s.kind == "hidden" and s.width == 7 for s in model.sites[1:])


def test_config_round_trips_through_json_and_init_is_seeded():
    config = RNNConfig(vocab_size=6, n_classes=4, max_len=10, hidden_size=9, num_layers=2)
    again = RNNConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config
    a, b, c = from_config(config, seed=3), from_config(again.to_json(), seed=3), from_config(config, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.weight_hh_l0, c.weight_hh_l0)
    assert a.weight_hh_l1.abs().min() > 0  # dense


def test_patched_state_at_t_flows_into_later_steps_only():
    model = from_config(RNNConfig(vocab_size=4, n_classes=3, max_len=8, hidden_size=6, num_layers=2), seed=1)
    tokens = torch.tensor([[0, 1, 2, 3, 1, 2]])
    with torch.no_grad():
        base = model.run(tokens, cache=["L0.hidden", "L1.hidden"])
        fn = patch(torch.full((1, 6, 6), 5.0), positions=2)
        hit = model.run(tokens, cache=["L0.hidden", "L1.hidden"], interventions={"L0.hidden": fn})
    assert base.cache["L0.hidden"].shape == (1, 6, 6)
    assert torch.equal(hit.cache["L0.hidden"][:, 2], torch.full((1, 6), 5.0))
    torch.testing.assert_close(hit.logits[:, :2], base.logits[:, :2])
    assert not torch.allclose(hit.cache["L0.hidden"][:, 3], base.cache["L0.hidden"][:, 3])  # t+1 reads the patched state
    assert not torch.allclose(hit.logits[:, 2], base.logits[:, 2])


def test_reparametrize_is_function_equivalent_on_random_models():
    model = from_config(RNNConfig(vocab_size=5, n_classes=4, max_len=9, hidden_size=11, num_layers=3, embed_dim=6), seed=2)
    other = reparametrize(model, seed=5)
    tokens = torch.randint(0, 5, (8, 9))
    with torch.no_grad():
        torch.testing.assert_close(other(tokens), model(tokens), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(other.weight_hh_l0, model.weight_hh_l0)


def test_compiled_and_reparametrized_models_round_trip_through_the_store(tmp_path):
    from zoo.store import load

    model = reparametrize(zoo.compile("induction", "rnn"), seed=1)
    model.save(tmp_path)
    again = load(tmp_path)
    assert isinstance(again, RNN) and again.config == model.config
    tokens = torch.as_tensor(tasks.get("induction").sample(8, seed=0).tokens)
    with torch.no_grad():
        assert torch.equal(again(tokens), model(tokens))
    for name, loc in model.ground_truth.variables.items():
        assert again.ground_truth.variables[name].site == loc.site
        np.testing.assert_allclose(again.ground_truth.variables[name].basis, loc.basis)


def test_too_long_input_and_bad_token_are_refused():
    model = zoo.compile("parity", "rnn")
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, model.max_len + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary"):
        model(torch.tensor([[0, 7]]))


# -- the compiler ------------------------------------------------------------------------------
@pytest.mark.parametrize("task_name", tasks.names())
def test_compiled_structure(task_name):
    task = tasks.get(task_name)
    model = zoo.compile(task_name, "rnn")  # compile speed: python -m benchmarks.compile
    gt = model.ground_truth
    assert isinstance(model, RNN) and model.family == "rnn"
    assert set(gt.variables) == set(task.program.names) and set(gt.components) == set(task.program.names)
    assert gt.edges == ()
    assert gt.variables[task.program.tokens.name].site == "embed"
    sites = {s.name: s for s in model.sites}
    assert set(gt.circuit) == set(sites)
    for name, loc in gt.variables.items():
        assert loc.lag == 0 and loc.basis.shape[1] == sites[loc.site].width
        assert loc.site in gt.components[name]
    assert gt.variables[task.output.name].site == f"L{model.num_layers - 1}.hidden" or task.output is task.program.tokens
    for site, names in gt.site_variables.items():
        assert all(gt.variables[n].site == site for n in names)


@pytest.mark.parametrize("task_name,max_len", [("parity", 40), ("count", 33), ("majority", 30), ("first_occurrence", 24), ("sort", 23)])
def test_compiled_models_are_exact_at_other_lengths(task_name, max_len):
    task = tasks.get(task_name, max_len=max_len)
    model = zoo.compile(task, "rnn")
    full = task.sample(128, seed=2)
    assert_matches(task, full.tokens, predict(model, full.tokens), full.targets, full.targets != tasks.IGNORE)


def _toy_task(build) -> Task:
    return Task("toy", ("BOS", "a", "b"), 6, build, lambda seq: [None] * len(seq), alphabet=(1, 2))


def test_unsupported_selection_is_refused_naming_the_primitive():
    def build(max_len):
        tokens = Tokens(("BOS", "a", "b"))
        return Program(Aggregate(Select.eq(tokens, tokens), tokens, "max", name="biggest", max_len=max_len))

    with pytest.raises(CompileError) as err:
        zoo.compile(_toy_task(build), "rnn")
    assert err.value.family == "rnn" and "Aggregate" in err.value.primitive


def test_lengths_needing_too_wide_a_layer_are_refused():
    with pytest.raises(CompileError) as err:
        zoo.compile("parity", "rnn", max_len=30_000)
    assert err.value.family == "rnn" and "units" in err.value.reason


# -- primitives the catalog does not use, on a synthetic program ---------------------------------
def _kitchen_sink(max_len: int) -> Program:
    """Every construction at once: offsets > 1, all/last, all/first, min, Sum of counters, a
    3-input Map, a memory lookup of a numerical value, and a Map over two magnitudes."""
    from tasks.program import Map, Sum

    tokens = Tokens(("BOS", "a", "b", "c"))
    is_a = Map(lambda x: x == 1, tokens, name="is_a")
    is_b = Map(lambda x: x == 2, tokens, name="is_b")
    prev2 = Aggregate(Select.offset_by(2), tokens, "last", name="prev2", default=0)
    a_before = Aggregate(Select.offset_by(1), is_a, "count", name="a_before")
    last_tok = Aggregate(Select.all(), tokens, "last", name="last_tok")
    first_b = Aggregate(Select.all(), is_b, "first", name="first_b")
    n_a = Aggregate(Select.all(), is_a, "count", name="n_a", max_len=max_len)
    n_b = Aggregate(Select.all(), is_b, "count", name="n_b", max_len=max_len)
    diff = Sum(n_a, n_b, weights=[1, -1], name="diff")
    lowest = Aggregate(Select.all(), last_tok, "min", name="lowest")
    combo = Map(lambda a, p, lo: (a + p + lo + 0) % 3, a_before, prev2, lowest, name="combo")
    recall = Aggregate(Select.eq(prev2, tokens), n_a, "last", name="recall", default=-1)
    mixed = Map(lambda c, r, fb: (c + 2 * r + fb) % 5, combo, recall, first_b, name="mixed")
    return Program(Map(lambda m, d: (m + d) % 4, mixed, diff, name="out"))


def test_synthetic_program_with_every_construction_is_exact_and_patchable():
    task = Task("kitchen_sink", ("BOS", "a", "b", "c"), 9, _kitchen_sink, lambda seq: [None] * len(seq), alphabet=(1, 2, 3))
    for model in (zoo.compile(task, "rnn"), reparametrize(zoo.compile(task, "rnn"), seed=2)):
        gt = model.ground_truth
        assert set(gt.variables) == set(task.program.names)

        @FAST
        @given(strategies.interventions(task, max_size=16))
        def check(case):
            base, source, variable, position = case
            targets = task.targets(base)
            assert_matches(task, base, predict(model, base), targets, targets != tasks.IGNORE)
            loc = gt.variables[variable]
            src = model.run(torch.as_tensor(source), cache=[loc.site]).cache[loc.site]
            got = predict(model, base, interventions={loc.site: patch(src, positions=torch.as_tensor(position), basis=loc.tensor())})
            cf = task.counterfactual(base, source, variable, position)
            assert_matches(task, base, got, cf.outputs, cf.mask)

        check()
