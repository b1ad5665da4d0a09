"""The transformer family and its compiler: sites, the fast path, reparametrisation, refusals.

The acceptance tests of tests/test_compiled.py run on every compiled (task, transformer) pair;
here the same three checks also run on reparametrised compiled models.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tasks
import zoo
from tasks import strategies
from tasks.program import Aggregate, Map, Program, Select, Tokens
from tasks.task import Task
from zoo import CompileError
from zoo.compilers import transformer as compiler
from zoo.families.transformer import Transformer, TransformerConfig, from_config, reparametrize

from .compiled_refusals import REFUSED
from .test_scan_prefix import big_monoid_task
from .test_compiled import assert_matches, predict

FAMILY = "transformer"
COMPILABLE = [t for t in tasks.names() if (t, FAMILY) not in REFUSED]
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def compiled(name: str):
    return zoo.compile(name, FAMILY)


@functools.lru_cache(maxsize=None)
def reparametrized(name: str):
    return reparametrize(compiled(name), seed=7)


# -- the family -----------------------------------------------------------------------------------
def test_site_names_are_stable_and_complete():
    model = from_config(TransformerConfig(vocab_size=5, n_classes=3, max_len=8, n_layers=2, n_heads=2), seed=0)
    names = [s.name for s in model.sites]
    assert names == [
        "L0.resid", "L0.attn.head0", "L0.attn.head1", "L0.resid_mid", "L0.mlp.hidden", "L0.mlp",
        "L1.resid", "L1.attn.head0", "L1.attn.head1", "L1.resid_mid", "L1.mlp.hidden", "L1.mlp",
        "L2.resid",
    ]
    assert names == [s.name for s in from_config(model.config, seed=1).sites]
    kinds = {s.name: s.kind for s in model.sites}
    assert kinds["L0.attn.head1"] == "head" and kinds["L1.mlp.hidden"] == "mlp_hidden" and kinds["L1.mlp"] == "mlp"
    tokens = torch.tensor([[0, 1, 2, 3, 4, 1]])
    cache = model.run(tokens, cache=names).cache
    assert all(cache[s.name].shape == (1, 6, s.width) for s in model.sites)
    # the residual stream is the sum of what was written into it
    heads = cache["L1.attn.head0"] + cache["L1.attn.head1"]
    assert torch.allclose(cache["L1.resid_mid"], cache["L1.resid"] + heads, atol=1e-6)
    assert torch.allclose(cache["L2.resid"], cache["L1.resid_mid"] + cache["L1.mlp"], atol=1e-6)


def test_config_is_json_and_init_is_seeded():
    config = TransformerConfig(vocab_size=4, n_classes=2, max_len=6, layer_norm=True)
    assert TransformerConfig(**json.loads(json.dumps(config.to_json()))) == config
    a, b, c = from_config(config, seed=3), from_config(config, seed=3), from_config(config, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.W_Q, c.W_Q)
    assert all(p.dtype == torch.float32 for p in a.parameters())


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 3), st.integers(1, 3), st.integers(1, 8), st.booleans(), st.integers(0, 2**16),
    st.integers(1, 4), st.integers(1, 9),
)
def test_fast_path_equals_tapped_path_random_models(n_layers, n_heads, d_head, layer_norm, seed, batch, length):
    config = TransformerConfig(vocab_size=5, n_classes=4, max_len=9, d_model=12, n_layers=n_layers, n_heads=n_heads, d_head=d_head, d_mlp=10, layer_norm=layer_norm)
    model = from_config(config, seed=seed)
    with torch.no_grad():
        for p in model.parameters():  # larger weights than the init, so that differences would show
            p.mul_(4.0)
    tokens = torch.as_tensor(np.random.default_rng(seed).integers(0, 5, size=(batch, length)))
    fast = model(tokens)
    tapped = model.run(tokens, cache=["L0.resid"] if n_layers else []).logits
    assert fast.shape == (batch, length, 4)
    assert torch.allclose(fast, tapped, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("task_name", COMPILABLE)
def test_fast_path_equals_tapped_path_compiled(task_name):
    task, model = tasks.get(task_name), compiled(task_name)

    @FEW
    @given(strategies.batches(task, max_size=16))
    def check(tokens):
        with torch.no_grad():
            fast = model(torch.as_tensor(tokens))
            tapped = model.run(torch.as_tensor(tokens), cache=[model.sites[0].name]).logits
        assert torch.equal(fast.argmax(-1), tapped.argmax(-1))
        assert torch.allclose(fast, tapped, rtol=1e-5, atol=1e-4)

    check()


def test_check_tokens_errors_name_the_limit():
    model = compiled("parity")
    with pytest.raises(ValueError, match="max_len 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="outside this model's vocabulary"):
        model(torch.tensor([[0, 5]]))


def test_save_and_load_roundtrip(tmp_path):
    from zoo import store

    model = reparametrized("induction")
    store.save(model, tmp_path / "m")
    loaded = store.load(tmp_path / "m")
    assert isinstance(loaded, Transformer) and loaded.config == model.config
    sample = tasks.get("induction").sample(32, seed=3)
    with torch.no_grad():
        assert torch.equal(model(torch.as_tensor(sample.tokens)), loaded(torch.as_tensor(sample.tokens)))
    assert loaded.ground_truth.to_json() == model.ground_truth.to_json()


# -- the compiler -------------------------------------------------------------------------------
def test_compiled_weights_are_as_documented():
    model = compiled("histogram")
    assert model.config.layer_norm is False and torch.all(model.attn_scale == 1.0)
    gt = model.ground_truth
    assert gt.variables["tokens"].site == "L0.resid"
    assert gt.variables["histogram"].site == "L1.resid"  # the count is decoded by MLP 0
    assert "L0.resid_mid" not in gt.site_variables  # it holds the per-key counts (scratch)
    assert "L0.resid_mid" in gt.circuit and "L0.attn.head0" in gt.circuit
    assert ("embed", "L0.attn.head0") in gt.edges and ("L0.mlp", "logits") in gt.edges
    shift = compiled("shift").ground_truth
    assert shift.variables["previous"].site == "L0.resid_mid" and shift.components["previous"] == ("L0.attn.head0",)


def test_components_and_edges_name_real_sites():
    for name in COMPILABLE:
        model = compiled(name)
        sites = {s.name for s in model.sites}
        gt = model.ground_truth
        assert set(gt.circuit) <= sites
        assert {c for comps in gt.components.values() for c in comps} <= set(gt.circuit)
        for w, r in gt.edges:
            assert w == "embed" or w in gt.circuit
            assert r == "logits" or r in gt.circuit
        for site, names in gt.site_variables.items():
            assert site in sites and all(gt.location(n).site in sites for n in names)


@pytest.mark.parametrize("task_name,max_len", [("modular_addition", 40), ("dyck1", 24), ("induction", 30), ("reverse", 9), ("histogram", 64)])
def test_exact_at_other_lengths(task_name, max_len):
    task = tasks.get(task_name, max_len=max_len)
    model = zoo.compile(task, FAMILY)
    for length in (task.min_len, max_len // 2, max_len):
        sample = task.sample(128, seed=length, length=length)
        assert_matches(task, sample.tokens, predict(model, sample.tokens), sample.targets, sample.targets != tasks.IGNORE)


def test_worst_case_sums_are_exact_at_max_len():
    # the largest running sums (all 4s) stress the exact-mean head's error bound
    task = tasks.get("modular_addition")
    tokens = np.full((1, task.max_len), 5, dtype=np.int64)
    tokens[0, 0] = 0
    model = compiled("modular_addition")
    total = model.run(torch.as_tensor(tokens), cache=[model.ground_truth.variables["total"].site]).cache
    loc = model.ground_truth.variables["total"]
    values = (total[loc.site] @ loc.tensor().T)[0, :, 0].detach().numpy()
    assert np.abs(values - 4 * np.arange(task.max_len)).max() < 1e-3
    assert_matches(task, tokens, predict(model, tokens), task.targets(tokens), task.targets(tokens) != tasks.IGNORE)


def _task(program_builder, vocab=("BOS", "a", "b")):
    return Task("custom", vocab, 8, program_builder, lambda seq: [None] * len(seq), alphabet=tuple(range(1, len(vocab))))


def test_refusals_name_family_and_primitive():
    with pytest.raises(CompileError, match="131 elements.*at most 128") as err:
        zoo.compile(big_monoid_task(), FAMILY)
    assert err.value.family == FAMILY and err.value.primitive == "Scan"

    def numeric_key(max_len):
        tokens = Tokens(("BOS", "a", "b"))
        x = Map(lambda t: t, tokens, name="x", numerical=True)
        return Program(Aggregate(Select.eq(x, x), tokens, "last", name="y", max_len=max_len))

    with pytest.raises(CompileError) as err:
        compiler.compile_program(_task(numeric_key))
    assert err.value.primitive == "Aggregate(eq)"

    def eq_sum(max_len):
        tokens = Tokens(("BOS", "a", "b"))
        x = Map(lambda t: t, tokens, name="x", numerical=True)
        return Program(Aggregate(Select.eq(tokens, tokens), x, "sum", name="y", max_len=max_len))

    with pytest.raises(CompileError, match="transformer.*Aggregate\\(eq, sum\\)"):
        compiler.compile_program(_task(eq_sum))
    with pytest.raises(CompileError, match="max_len"):
        zoo.compile("modular_addition", FAMILY, max_len=20_000)


def test_uncatalogued_primitives_compile_exactly():
    """Offsets > 1 with a default, select-all first/last, count without a value, eq max."""

    def program(max_len):
        tokens = Tokens(("BOS", "a", "b", "c"))
        two_back = Aggregate(Select.offset_by(2), tokens, "last", name="two_back", default=3, max_len=max_len)
        first = Aggregate(Select.all(), tokens, "first", name="first_tok")
        last = Aggregate(Select.all(), two_back, "last", name="last_tok")
        n = Aggregate(Select.all(), None, "count", name="n", max_len=max_len)
        big = Aggregate(Select.eq(last, tokens), tokens, "max", name="big", default=0, max_len=max_len)
        return Program(Map(lambda a, b, c, d: (a + b + c + d) % 4, first, last, n, big, name="mix", desc="mix"))

    task = _task(program, vocab=("BOS", "a", "b", "c"))
    model = compiler.compile_program(task)
    rng = np.random.default_rng(0)
    for length in range(2, 9):
        tokens = task.random_inputs(rng, 64, length)
        targets = task.targets(tokens)
        mask = np.broadcast_to(np.arange(length) >= 1, tokens.shape)
        assert_matches(task, tokens, predict(model, tokens), np.where(mask, targets, -100), mask)


# -- reparametrisation --------------------------------------------------------------------------
def test_reparametrize_is_function_equivalent_and_not_axis_aligned():
    model = compiled("induction")
    other = reparametrize(model, seed=1)
    sample = tasks.get("induction").sample(64, seed=0)
    assert np.array_equal(predict(model, sample.tokens), predict(other, sample.tokens))
    for name, loc in other.ground_truth.variables.items():
        assert np.abs(loc.basis).max() < 0.9, f"{name} still reads off single residual axes"
        assert np.allclose(loc.basis @ loc.basis.T, np.eye(loc.dim), atol=1e-6)
    assert not torch.allclose(model.W_Q, other.W_Q)
    random = from_config(TransformerConfig(vocab_size=7, n_classes=8, max_len=16), seed=0)
    with torch.no_grad():
        tokens = torch.as_tensor(sample.tokens)
        assert torch.allclose(random(tokens), reparametrize(random, seed=2)(tokens), atol=1e-5)


