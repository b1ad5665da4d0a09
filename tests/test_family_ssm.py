"""The ssm family: float32 facts of the compiler, fast path == tapped path, sites, refusals,
compile speed, and the acceptance checks of tests/test_compiled.py on reparametrized models."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tasks
import zoo
from tasks import Aggregate, Indices, Map, Program, Select, Sum, Task, Tokens, strategies
from zoo import CompileError, patch
from zoo.families.ssm import SSMConfig, from_config, reparametrize

from .compiled_refusals import SSM as SSM_REFUSED
from .test_scan_prefix import big_monoid_task
from .test_compiled import check_equals_program, check_ground_truth_patching, check_outside_ground_truth, predict

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COMPILED = [t for t in tasks.names() if (t, "ssm") not in SSM_REFUSED]


@functools.lru_cache(maxsize=None)
def compiled(name: str):
    return zoo.compile(name, "ssm")


@functools.lru_cache(maxsize=None)
def rotated(name: str):
    return reparametrize(compiled(name), seed=7)


def test_float32_facts_the_compiler_rests_on():
    z = torch.tensor([128.0, -128.0])
    assert F.softplus(z).tolist() == [128.0, 0.0]
    delta = torch.tensor(128.0)
    assert torch.exp(-delta * torch.exp(torch.tensor(-40.0))).item() == 1.0  # count channels keep exactly
    assert torch.exp(-delta * torch.exp(torch.tensor(0.0))).item() == 0.0  # write channels overwrite
    assert torch.exp(-F.softplus(torch.tensor(-128.0)) * 1.0).item() == 1.0  # ... or keep
    c = torch.arange(-300, 301, dtype=torch.float32)
    assert torch.equal((delta * c) * torch.tensor(1 / 128.0), c)


configs = st.builds(
    dict, d_model=st.integers(1, 12), n_layers=st.integers(0, 3), d_inner=st.integers(1, 10), d_state=st.integers(1, 5),
    d_conv=st.integers(1, 5), d_mlp=st.sampled_from([0, 7]), pos_embed=st.booleans(), act=st.sampled_from(["silu", "relu", "identity"]),
    gate=st.sampled_from(["silu", "relu", "identity"]),
)


@FEW
@given(configs, st.integers(0, 2**16), st.integers(1, 12), st.integers(1, 5))
def test_fast_path_equals_tapped_path_on_random_models(sizes, seed, length, batch):
    model = from_config(SSMConfig(vocab_size=5, n_classes=3, max_len=12, **sizes), seed=seed)
    tokens = torch.randint(0, 5, (batch, length), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fast, loop = model(tokens), model.forward_loop(tokens)
        names = [s.name for s in model.sites]
        cached = model.run(tokens, cache=names)  # vectorised scan, states tapped whole
        identity = {s.name: (lambda x, pos: x) for s in model.sites if s.recurrent}
        looped = model.run(tokens, cache=names, interventions=identity)  # step by step
    torch.testing.assert_close(fast, loop, rtol=1e-4, atol=1e-4)
    assert torch.equal(looped.logits, loop)
    torch.testing.assert_close(cached.logits, loop, rtol=1e-4, atol=1e-4)
    for name in names:
        torch.testing.assert_close(cached.cache[name], looped.cache[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", COMPILED)
def test_fast_path_equals_tapped_path_exactly_on_compiled_models(name):
    model, task = compiled(name), tasks.get(name)

    @FEW
    @given(strategies.batches(task, max_size=16))
    def check(tokens):
        with torch.no_grad():
            assert torch.equal(model(torch.as_tensor(tokens)), model.forward_loop(torch.as_tensor(tokens)))

    check()


def test_sites_are_named_and_shaped():
    cfg = SSMConfig(vocab_size=4, n_classes=2, max_len=6, d_model=5, n_layers=2, d_inner=3, d_state=2, d_mlp=4)
    model = from_config(cfg, seed=0)
    names = [s.name for s in model.sites]
    assert names == ["L0.resid", "L0.conv", "L0.state", "L0.mixer", "L0.mlp.hidden", "L0.mlp",
                     "L1.resid", "L1.conv", "L1.state", "L1.mixer", "L1.mlp.hidden", "L1.mlp", "L2.resid"]
    assert model.site("L1.state").recurrent and model.site("L1.state").width == 6
    cache = model.run(torch.zeros(3, 6, dtype=torch.long), cache=names).cache
    assert {n: tuple(v.shape) for n, v in cache.items()} == {s.name: (3, 6, s.width) for s in model.sites}
    assert SSMConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary"):
        model(torch.full((1, 3), 4))


@FEW
@given(strategies.pairs(tasks.get("count"), max_size=8), st.integers(1, 15))
def test_a_patched_state_flows_into_later_steps(pair, j):
    """Patching the counter state at j restarts the count from the source's count at j."""
    base, source = pair
    j = min(j, base.shape[1] - 1)
    model, task = compiled("count"), tasks.get("count")
    layer = int(model.ground_truth.variables["count_a"].site[1])
    site = f"L{layer}.state"
    src = model.run(torch.as_tensor(source), cache=[site]).cache[site]
    got = predict(model, base, interventions={site: patch(src, positions=j)})
    cb, cs = task.run(base)["count_a"], task.run(source)["count_a"]
    expected = np.where(np.arange(base.shape[1]) >= j, cs[:, j : j + 1] + cb - cb[:, j : j + 1], cb)
    classes = np.asarray(task.classes)
    assert (classes[got] == expected)[:, 1:].all()


def test_refusals_name_the_primitive():
    with pytest.raises(CompileError, match="131 elements.*at most 128") as err:
        zoo.compile(big_monoid_task(), "ssm")
    assert err.value.family == "ssm" and err.value.primitive == "Scan"

    def numeric_key(max_len):
        tokens = Tokens(("BOS", "a", "b"))
        key = Map(lambda x: x, tokens, name="key", numerical=True)
        return Program(Aggregate(Select.eq(key, key), None, "count", name="n", max_len=max_len))

    task = Task("numeric_key", ("BOS", "a", "b"), 6, numeric_key, lambda s: [None] * len(s), alphabet=(1, 2))
    with pytest.raises(CompileError, match="Select.eq"):
        zoo.compile(task, "ssm")


# -- reparametrized models pass the acceptance checks -----------------------------------------------
@pytest.mark.parametrize("name", COMPILED)
def test_reparametrized_model_is_equivalent_and_not_axis_aligned(name):
    model, new, task = compiled(name), rotated(name), tasks.get(name)
    tokens = torch.as_tensor(task.sample(64, seed=3).tokens)
    with torch.no_grad():
        torch.testing.assert_close(new(tokens), model(tokens), rtol=1e-3, atol=1e-2)  # float rounding only
    for var, loc in new.ground_truth.variables.items():
        assert np.abs(loc.basis).max() < 0.99, f"{var}'s basis is still axis-aligned"
        old = model.ground_truth.variables[var]
        assert old.site == loc.site and old.dim == loc.dim
    # same algorithm, different coordinates: cached activations are rotated, not equal
    site = "L0.resid"
    a, b = (m.run(tokens, cache=[site]).cache[site] for m in (model, new))
    assert not torch.allclose(a, b, atol=1e-2)


def check_acceptance(model, task, n):
    """The three checks of tests/test_compiled.py on ``model``."""
    check_equals_program(model, task, n)
    check_ground_truth_patching(model, task, n)
    check_outside_ground_truth(model, task, n)


# -- primitives the catalogue does not use: every (selection, reduction) and value encoding -------
ABC = ("BOS", "a", "b", "c")


def _mixed_program(max_len: int) -> Program:
    """Offsets, eq-selections whose query may miss, numerical and categorical values, every reduction."""
    tokens, indices = Tokens(ABC), Indices(max_len)
    vote = Map(lambda x: {1: 2, 2: -1}.get(x, 0), tokens, name="vote", numerical=True)
    query = Map(lambda x: {1: 2, 2: 3, 3: 2}.get(x, 0), tokens, name="query")
    parts = [
        Aggregate(Select.offset_by(2), vote, "last", name="vote_2_ago", default=5),
        Aggregate(Select.offset_by(1), None, "count", name="has_previous", max_len=max_len),
        Aggregate(Select.offset_by(3), vote, "sum", name="sum_3_ago", max_len=max_len),
        Aggregate(Select.eq(tokens, tokens), vote, "sum", name="same_token_votes", max_len=max_len),
        Aggregate(Select.eq(tokens, query), vote, "last", name="last_vote_of_query", default=-3),
        Aggregate(Select.eq(tokens, query), vote, "min", name="min_vote_of_query", default=4),
        Aggregate(Select.eq(tokens, query), vote, "max", name="max_vote_of_query", default=-4),
        Aggregate(Select.all(), vote, "first", name="first_vote"),
        Aggregate(Select.all(), vote, "min", name="min_vote"),
    ]
    cats = [
        Aggregate(Select.eq(tokens, query), indices, "first", name="first_query_index", default=0),
        Aggregate(Select.eq(tokens, query), tokens, "max", name="max_token_of_query", default=0),
        Aggregate(Select.all(), query, "min", name="min_query"),
        Aggregate(Select.offset_by(1), tokens, "first", name="previous_token", default=0),
        Aggregate(Select.all(), tokens, "last", name="same_token"),
    ]
    numeric = [Map(lambda x, i=i: x * (i + 1), c, name=f"weighted{i}", numerical=True) for i, c in enumerate(cats)]
    return Program(Sum(*parts, *numeric, name="total"))


def _identity_reference(seq):
    return [None] * len(seq)


MIXED = Task("mixed_primitives", ABC, 9, _mixed_program, _identity_reference, alphabet=(1, 2, 3))


@pytest.mark.parametrize("reparam", [False, True])
def test_every_reduction_and_encoding_compiles_exactly(reparam):
    model = zoo.compile(MIXED, "ssm")
    if reparam:
        model = reparametrize(model, seed=3)
    check_acceptance(model, MIXED, 10)


def test_save_and_load_round_trip(tmp_path):
    from zoo.store import load

    model = rotated("induction")
    model.save(tmp_path / "m")
    again = load(tmp_path / "m")
    tokens = torch.as_tensor(tasks.get("induction").sample(16, seed=5).tokens)
    with torch.no_grad():
        assert torch.equal(model(tokens), again(tokens))
    assert again.ground_truth.to_json() == model.ground_truth.to_json()
    assert isinstance(again.config, SSMConfig) and again.config == model.config
