"""Methods on a toy model with a known mechanism: the interface, findings, the patching engine, each method."""

from __future__ import annotations

import json
import pathlib
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import methods
import tasks
from methods import AlignedVariable, Alignment, Circuit, FindingError, SiteScores
from methods.activation_patching import naive_sweep
from methods.patching import ablation_sources, readout, site_names, sweep
from zoo import GroundTruth, Location, Site, ZooModel


class ToyParity(ZooModel):
    """Parity by a 2-state recurrence: ``h_t = (1 - x1_t) h_{t-1} + x1_t swap(h_{t-1})`` where x1
    is the embedding's token-'1' unit (the state is the running count of ones mod 2, carried to
    later steps); ``L0.out`` reads the states out per position (the program's ``parity``);
    logits = scale * out. ``L0.junk`` is tapped and unused. Its components are the three
    non-embedding sites, whole; the ground truth puts ``L0.hidden`` and ``L0.out`` in the circuit
    at every position but BOS and ``L0.junk`` out of it."""

    family = "toy"

    def __init__(self, max_len: int = 8):
        super().__init__()
        self.vocab_size, self.max_len = 3, max_len
        self.scale = torch.nn.Parameter(torch.tensor(4.0))
        inside = (-1,) + (1,) * (max_len - 1)
        self.ground_truth = GroundTruth(
            {"tokens": Location("embed", np.eye(3)), "parity": Location("L0.out", np.eye(2))},
            {"parity": ("L0.hidden", "L0.out")}, ("embed", "L0.hidden", "L0.out"), (), {"embed": ("tokens",), "L0.out": ("parity",)},
            cells={"L0.junk": (-1,) + (0,) * (max_len - 1), "L0.hidden": inside, "L0.out": inside},
            component_variables={"L0.junk": (), "L0.hidden": ("parity",), "L0.out": ("parity",)})

    def site_list(self):
        return [Site("embed", 0, "embed", 3), Site("L0.junk", 0, "mlp_hidden", 4), Site("L0.hidden", 0, "hidden", 2, recurrent=True), Site("L0.out", 0, "mlp_hidden", 2)]

    def _forward(self, tokens, tap):
        B, T = tokens.shape
        x = tap("embed", torch.nn.functional.one_hot(tokens, 3).float())
        tap("L0.junk", x.sum(-1, keepdim=True).expand(B, T, 4) * 1.0)
        h = torch.tensor([1.0, 0.0]).expand(B, 2)
        states = []
        for t in range(T):
            flip = x[:, t, 2:3]
            h = tap("L0.hidden", (1 - flip) * h + flip * h.flip(-1), t=t)
            states.append(h)
        return self.scale * tap("L0.out", torch.stack(states, 1))


TASK = tasks.get("parity", max_len=8)
FAST = {"das": {"steps": 30}, "sae": {"steps": 60}, "subnetwork_probing": {"steps": 30}, "integrated_gradients": {"steps": 4}}


@pytest.fixture(scope="module")
def toy():
    return ToyParity()


def test_the_toy_solves_parity(toy):
    tokens, targets = TASK.sample(64, seed=0)
    pred = toy.predict(torch.as_tensor(tokens)).numpy()
    mask = targets != tasks.IGNORE
    assert (pred[mask] == targets[mask]).all()


# -- registry and plug-ins -----------------------------------------------------------------------
def test_names_and_get():
    for name in ("activation_patching", "mean_ablation", "resample_ablation", "attribution_patching", "integrated_gradients",
                 "probes", "das", "sae", "acdc", "subnetwork_probing", "random", "oracle"):
        assert name in methods.names() and callable(methods.get(name))
    assert methods.get("methods.controls:random") is methods.get("random")


def test_unknown_method_is_a_one_line_error_with_close_matches():
    with pytest.raises(ValueError) as e:
        methods.get("activation_pathcing")
    msg = str(e.value)
    assert "\n" not in msg and "did you mean activation_patching" in msg and "subnetwork_probing" in msg
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg_xyz.mod'"):
        methods.get("no_such_pkg_xyz.mod:fn")


def test_methods_cannot_read_ground_truth_but_the_oracle_can(toy):
    def sneaky(model, task, *, seed=0, budget=None):
        return model.ground_truth

    with pytest.raises(PermissionError, match="ground_truth"):
        methods.run(sneaky, toy, TASK)
    found = methods.run("oracle_circuit", toy, TASK)
    assert found.components == ("L0.hidden", "L0.out")
    assert toy.ground_truth is not None  # the real model is untouched


PLUGIN = """
import numpy as np
from methods import SiteScores

def constant(model, task, *, seed=0, budget=None):
    return SiteScores({s.name: np.full(task.max_len, 0.5) for s in model.sites}, ablation=None)
"""


def test_a_plugin_outside_the_package_runs_by_import_path_and_entry_point(tmp_path, monkeypatch, toy):
    pkg = tmp_path / "zoo_plugin_test_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "scores.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "zoo_plugin_test_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-plugin-test-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[circuit_zoo.methods]\nconstant_plugin = zoo_plugin_test_pkg.scores:constant\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    by_path = methods.run("zoo_plugin_test_pkg.scores:constant", toy, TASK)
    assert by_path.method == "zoo_plugin_test_pkg.scores:constant" and by_path.scores["embed"][0] == 0.5
    assert "constant_plugin" in methods.names()
    by_entry = methods.run("constant_plugin", toy, TASK)
    assert set(by_entry.scores) == {"embed", "L0.junk", "L0.hidden", "L0.out"}


def test_register_and_a_method_returning_garbage_is_refused(toy):
    methods.register("returns_none_test", lambda model, task, seed=0, budget=None: None)
    try:
        assert "returns_none_test" in methods.names()
        with pytest.raises(FindingError, match="returned a NoneType"):
            methods.run("returns_none_test", toy, TASK)
    finally:
        methods.registry._REGISTERED.pop("returns_none_test")


# -- findings -------------------------------------------------------------------------------------
def test_findings_validate():
    with pytest.raises(FindingError, match="non-finite"):
        SiteScores({"embed": [0.0, float("nan")]})
    with pytest.raises(FindingError, match="one score per position"):
        SiteScores({"a": [0.0, 1.0], "b": [1.0]})
    with pytest.raises(FindingError, match="ablation 'median'"):
        SiteScores({"a": [0.0]}, ablation="median")
    with pytest.raises(FindingError, match="orthonormal"):
        AlignedVariable("embed", np.array([[1.0, 1.0, 0.0]]))
    with pytest.raises(FindingError, match="repeat"):
        Circuit(("embed", "embed"))
    toy = ToyParity()
    with pytest.raises(FindingError, match="unknown sites"):
        SiteScores({"L7.mlp": [1.0]}).validate(toy)
    with pytest.raises(FindingError, match="width 3 differs"):
        Alignment({"parity": AlignedVariable("L0.hidden", np.eye(3)[:1])}).validate(toy)
    with pytest.raises(FindingError, match="not in task"):
        Alignment({"nope": AlignedVariable("L0.hidden", np.eye(2)[:1])}).validate(toy, TASK)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_findings_round_trip_through_json(n_sites, k, seed):
    rng = np.random.default_rng(seed)
    scores = SiteScores({f"s{i}": rng.standard_normal(5) for i in range(n_sites)}, {"s0": float(rng.standard_normal())}, "mean", "m")
    q, _ = np.linalg.qr(rng.standard_normal((6, k)))
    align = Alignment({"v": AlignedVariable("s0", q.T, (1, 2), 1, score=0.5)})
    circ = Circuit(tuple(f"s{i}" for i in range(n_sites)), (("s0", "logits"),), "zero", {"s0": 1.0})
    for f in (scores, align, circ):
        back = methods.from_json(json.loads(json.dumps(f.to_json())))
        assert back.to_json() == f.to_json()


# -- the patching engine --------------------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(st.sampled_from(methods.ABLATIONS), st.sampled_from(["logit", "prob", "changed", "kl"]), st.integers(1, 6), st.integers(0, 1000), st.integers(1, 40))
def test_batched_sweep_equals_one_forward_per_patch(ablation, kind, n, seed, max_rows):
    toy = ToyParity()
    base, source, _, _ = TASK.sample_interventions(n, seed=seed, variable="parity")
    names = site_names(toy)
    sources = ablation_sources(toy, TASK, base, names, ablation, seed=seed, source=source)
    targets, mask = readout(TASK, base)
    pairs = [(s, t) for s in names for t in range(TASK.max_len)] + [(s, None) for s in names]
    fast = sweep(toy, base, sources, pairs, targets=targets, mask=mask, kind=kind, max_rows=max_rows)
    slow = naive_sweep(toy, TASK, base, sources, pairs, targets=targets, mask=mask, kind=kind)
    assert np.allclose(fast, slow, atol=1e-5)


def test_activation_patching_finds_the_toy_circuit(toy):
    for ablation in methods.ABLATIONS:
        f = methods.run("activation_patching", toy, TASK, budget=16, ablation=ablation, grain="site")
        assert f.ablation == ablation and f.n_positions == TASK.max_len
        assert np.all(f.scores["L0.junk"] == 0) and f.components["L0.junk"] == 0
        assert f.components["L0.hidden"] > 0 and f.components["embed"] > 0
    f = methods.run("activation_patching", toy, TASK, budget=16)
    assert set(f.scores) == {c.name for c in toy.components} == {"L0.junk", "L0.hidden", "L0.out"}  # components by default
    # a patched state at t carries the source's parity into every later output: the effect grows with t
    assert f.scores["L0.hidden"][0] == 0 and f.scores["L0.hidden"][1] > f.scores["L0.hidden"][-1] > 0


def test_attribution_patching_is_exact_where_the_metric_is_linear_in_the_site(toy):
    ap = methods.run("activation_patching", toy, TASK, budget=16, metric="logit")
    at = methods.run("attribution_patching", toy, TASK, budget=16, metric="logit")
    # the last state enters only the last logit, linearly: first order is exact there
    assert at.scores["L0.hidden"][-1] == pytest.approx(ap.scores["L0.hidden"][-1], abs=1e-5)
    assert np.all(at.scores["L0.junk"] == 0)


def test_integrated_gradients_is_complete(toy):
    ap = methods.run("activation_patching", toy, TASK, budget=16, metric="logit", grain="site")
    ig = methods.run("integrated_gradients", toy, TASK, budget=16, metric="logit", steps=32, grain="site")
    for s in ("embed", "L0.hidden"):  # a site's IG sums to its whole-site patching effect
        assert ig.scores[s].sum() == pytest.approx(ap.components[s], rel=0.02, abs=1e-3)
    assert np.all(ig.scores["L0.junk"] == 0)


# -- alignments and circuits on the toy ---------------------------------------------------------------
def test_das_and_probes_find_parity_in_the_readout_not_the_carried_state(toy):
    das = methods.run("das", toy, TASK, budget=64, variables=["parity"], steps=30)
    # patching the carried state at j also flips every later output: not the per-position parity
    assert das.variables["parity"].site == "L0.out" and das.meta["iia"]["parity"]["L0.hidden"] < 0.9
    assert das.iia(toy, TASK, "parity", n=128, seed=5) == 1.0
    pr = methods.run("probes", toy, TASK, budget=32, variables=["parity"])
    # the probe reads parity where it is first decodable: the state (a probe is not causal)
    assert pr.variables["parity"].site == "L0.hidden" and pr.variables["parity"].score == 1.0
    pr = methods.run("probes", toy, TASK, budget=32, variables=["parity"], sites=["L0.out"])
    assert pr.iia(toy, TASK, "parity", n=128, seed=5) == 1.0


def test_sae_featurizer_patches_what_it_claims(toy):
    found = methods.run("sae", toy, TASK, budget=32, variables=["parity"], sites=["L0.out"], steps=100)
    v = found.variables["parity"]
    assert v.featurizer is not None and v.site == "L0.out"
    assert found.iia(toy, TASK, "parity", n=128, seed=5) >= 0.9
    # swapping no feature at all leaves the activation exactly as it was (the error term)
    x = toy.run(torch.as_tensor(TASK.sample(4).tokens), cache=["L0.out"]).cache["L0.out"]
    assert torch.allclose(v.featurizer.interchange(x, x), x, atol=1e-6)


@pytest.mark.parametrize("name", ["acdc", "subnetwork_probing"])
def test_circuit_methods_drop_the_unused_site(name, toy):
    for ablation in ("mean", "resample"):
        c = methods.run(name, toy, TASK, budget=16, ablation=ablation, **FAST.get(name, {}))
        assert c.ablation == ablation and set(c.components) == {"L0.hidden", "L0.out"}
        c = methods.run(name, toy, TASK, budget=16, ablation=ablation, grain="site", **FAST.get(name, {}))
        assert set(c.components) == {"embed", "L0.hidden", "L0.out"}


@pytest.mark.parametrize("name", [n for n in methods.registry.BUILTIN])
def test_every_builtin_is_deterministic_for_a_seed(name, toy):
    a = methods.run(name, toy, TASK, seed=3, budget=8, **FAST.get(name, {}))
    b = methods.run(name, toy, TASK, seed=3, budget=8, **FAST.get(name, {}))
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())


def test_random_control_depends_on_the_seed_and_oracle_scores_the_circuit(toy):
    a, b = methods.run("random", toy, TASK, seed=0), methods.run("random", toy, TASK, seed=1)
    assert not np.array_equal(a.scores["L0.hidden"], b.scores["L0.hidden"])
    o = methods.run("oracle", toy, TASK)
    assert set(o.scores) == {"L0.junk", "L0.hidden", "L0.out"} and not o.scores["L0.junk"].any()
    assert o.scores["L0.hidden"].tolist() == [0.0] + [1.0] * (TASK.max_len - 1)
    assert methods.run("oracle_alignment", toy, TASK).iia(toy, TASK, "parity", n=64) == 1.0


def test_no_family_branch_in_methods():
    src = pathlib.Path(methods.__file__).parent
    for path in src.glob("*.py"):
        text = path.read_text()
        assert ".family" not in text and "zoo.families" not in text and "from zoo.compilers" not in text, path.name


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["embed", "L0.hidden", "L0.out"]), st.sampled_from(methods.ABLATIONS), st.floats(0.0, 1.0), st.integers(0, 1000))
def test_the_patch_mask_interpolates_between_the_model_and_the_ablation(site, ablation, p, seed):
    from methods.patching import mask_interventions
    from zoo import patch

    toy = ToyParity()
    base, source, _, _ = TASK.sample_interventions(4, seed=seed, variable="parity")
    src = ablation_sources(toy, TASK, base, [site], ablation, seed=seed, source=source)[site]
    x = torch.as_tensor(base)
    run = lambda amount: toy.run(x, cache=[site], interventions=mask_interventions({site: src}, {site: torch.tensor(amount)})).cache[site]  # noqa: E731
    clean = toy.run(x, cache=[site]).cache[site]
    full = toy.run(x, cache=[site], interventions={site: patch(src)}).cache[site]
    assert torch.allclose(run(0.0), clean) and torch.allclose(run(1.0), full, atol=1e-6)
    if site != "L0.hidden":  # a non-recurrent site: the mixture is exactly linear
        assert torch.allclose(run(p), clean + p * (full - clean), atol=1e-5)
