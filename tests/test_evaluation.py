"""Evaluation: metric definitions on hand-made cases, control checks, plug-in methods via the CLI,
failed/timed-out cells, resuming an interrupted grid, the report."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest

import evaluation
import evaluation.grid as grid
import tasks
import zoo
from evaluation import metrics as M
from evaluation.summary import broken, summarize

TIME_KEYS = ("seconds", "method_seconds", "traceback")


# -- metric definitions -------------------------------------------------------------------------
def test_auroc_definitions():
    y = np.array([1, 1, 0, 0, 0], bool)
    assert M.auroc([0.9, 0.8, 0.1, 0.2, 0.3], y) == 1.0
    assert M.auroc([0.1, 0.2, 0.9, 0.8, 0.7], y) == 0.0
    assert M.auroc([0.5] * 5, y) == 0.5  # ties count one half
    assert math.isnan(M.auroc([0.1, 0.2], [True, True]))
    rng = np.random.default_rng(0)
    labels = rng.random(4000) < 0.3
    assert abs(M.auroc(rng.random(4000), labels) - 0.5) < 0.03


def test_precision_recall_and_curves():
    assert M.precision_recall(["a", "b"], ["a", "c"]) == (0.5, 0.5)
    assert M.precision_recall([], ["a"]) == (1.0, 0.0)
    assert M.cpr_cmd([1, 1, 1]) == (1.0, 0.0)
    cpr, cmd = M.cpr_cmd([0, 1])
    assert cpr == pytest.approx(0.5) and cmd == pytest.approx(0.5)


def test_subspace_overlap():
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((8, 8)))[0].T
    assert M.subspace_overlap(q[:3], q[:3]) == pytest.approx(1.0)
    assert M.subspace_overlap(q[:3], q[3:5]) == pytest.approx(0.0, abs=1e-12)
    assert M.subspace_overlap(q[:2], q[:4]) == pytest.approx(1.0)  # nested
    assert M.subspace_overlap(q[:2], q[[0, 5]]) == pytest.approx(0.5)  # one shared direction of two
    assert M.subspace_overlap(q[:2], np.eye(5)[:2]) == 0.0  # different widths: different sites


def test_bootstrap_intervals():
    point, lo, hi = M.bootstrap_ci([1.0, 2.0, 3.0, float("nan")], seed=0)
    assert point == 2.0 and lo <= 2.0 <= hi
    assert M.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert M.bootstrap_ci([0.2, 0.4], seed=3) == M.bootstrap_ci([0.2, 0.4], seed=3)
    gap = M.bootstrap_gap({"a": [1.0, 1.0], "b": [0.5, 0.5], "c": []})
    assert gap == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("arch", zoo.FAMILIES)
def test_faithfulness_of_full_and_empty_circuits(arch):
    task = tasks.get("parity")
    model = zoo.compile(task, arch)
    f = M.Faithfulness(model, task, ablation="resample", n=32)
    assert f(M.components(model)) == pytest.approx(1.0)
    assert f(()) == pytest.approx(0.0)
    truth = [c for c in M.components(model) if c in set(model.ground_truth.circuit)]
    assert f(truth) == pytest.approx(1.0)  # everything outside the planted circuit can be ablated


# -- controls on compiled models ----------------------------------------------------------------
@pytest.fixture(scope="module")
def control_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("controls")
    rows = evaluation.evaluate(["oracle", "oracle_alignment", "random", "random_alignment", "activation_patching"], ["parity", "induction", "dyck1"], None,
                               kinds=("compiled", "reparametrized"), out=out, n_pairs=64, progress=lambda s: None)
    return out, rows


def test_controls(control_grid):
    _, rows = control_grid
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows if r["status"] != "ok"]
    for r in rows:
        if r["method"].startswith("oracle"):
            for k in ("auroc", "auroc_signed", "precision_at_k", "recall_at_k", "faithfulness_at_k", "iia", "iia_changed", "overlap"):
                if r.get(k) is not None:
                    assert r[k] == pytest.approx(1.0), (r["task"], r["family"], r["kind"], k, r[k])
    summary = summarize(rows)
    assert not broken(summary), summary["checks"]
    rnd = summary["methods"]["random"]["score"]
    assert rnd[1] <= 0.5 <= rnd[2]
    ap = summary["methods"]["activation_patching"]["score"]
    assert ap[0] > 0.9 and ap[1] > rnd[2], (ap, rnd)  # well above random
    ra = summary["methods"]["random_alignment"]
    assert ra["extra"]["iia_changed"] < ra["score"][0] - 0.2, ra  # plain IIA credits a random location with the outputs it leaves alone
    assert f"random_alignment {ra['extra']['iia_changed']:.3f}" in evaluation.render_text(summary).split("IIA on changed outputs only:")[1]


def test_variable_recovery_counts_the_changed_outputs_apart():
    """On compiled sort the oracle's IIA on changed outputs is 1 wherever some pair changes an
    output; the positional variables (SEP sits at a position fixed by the length, which base and
    source share) change none, so there it is NaN and only plain IIA, which any location holding
    nothing passes, is defined. An alignment that puts every variable at a location holding
    nothing (a sparse compiled model's unread stream coordinates) keeps a plain IIA well above 0
    and scores 0 on changed outputs."""
    from methods.controls import oracle_alignment
    from methods.finding import AlignedVariable, Alignment

    task, model = tasks.get("sort"), zoo.compile("sort", "transformer")
    truth = model.ground_truth
    rec = M.variable_recovery(oracle_alignment(model, task), model, task, truth, n=64)
    inert = {v for v, r in rec.items() if math.isnan(r["iia_changed"])}
    assert {"indices", "sep_index"} <= inert and "sorted_value" not in inert and "le0" not in inert, inert
    assert all(r["iia"] == 1.0 for r in rec.values())
    assert all(r["iia_changed"] == 1.0 for v, r in rec.items() if v not in inert)
    site = model.site_list()[-1]  # the last stream point, read by the unembedding only
    read = np.abs(model.W_U.detach().numpy()).sum(1) > 0  # [d_model, classes]
    unread = np.eye(site.width)[~read][:1]
    nothing = Alignment({v: AlignedVariable(site.name, unread, "all", 0) for v in truth.variables if v not in inert})
    rec = M.variable_recovery(nothing, model, task, truth, n=64)
    assert all(r["iia_changed"] == 0.0 for r in rec.values()), rec
    assert np.mean([r["iia"] for r in rec.values()]) > 0.5


def test_broken_evaluation_is_flagged(control_grid):
    _, rows = control_grid
    bad = [dict(r, auroc=0.5, score=0.5) if r["method"] == "oracle" else r for r in rows]
    summary = summarize(bad)
    assert broken(summary)
    assert evaluation.render_text(summary).startswith("THE EVALUATION IS BROKEN")


def test_oracle_is_held_to_circuit_faithfulness_on_compiled_cells_only(control_grid):
    _, rows = control_grid
    oracle = [r for r in rows if r["method"] == "oracle"]
    assert oracle and not broken(summarize(rows))
    unfaithful = [dict(r, faithfulness_at_k=0.0) for r in oracle]
    assert broken(summarize(unfaithful))  # compiled: the planted circuit must be faithful
    trained = [dict(r, kind="trained") for r in unfaithful]
    assert not broken(summarize(trained + [r for r in rows if r["method"] != "oracle"]))  # trained: only where variables live is planted
    assert broken(summarize([dict(r, auroc=0.5) for r in trained]))  # ... and that is still checked
    alignment = {"method": "oracle_alignment", "task": "shift", "family": "rnn", "status": "ok", "score": 0.97, "iia": 0.97, "overlap": 1.0}
    assert not broken(summarize([dict(alignment, kind="trained")]))  # a trained model's IIA is its own (>= 0.95 on its card)
    assert broken(summarize([dict(alignment, kind="compiled")]))
    missing = {"method": "oracle", "task": "shift", "family": "rnn", "kind": "trained", "status": "missing", "error": "not built"}
    summary = summarize(rows + [missing])
    assert not broken(summary) and summary["methods"]["oracle"]["failed"] == 0  # not built yet is not a failure


def test_report(control_grid):
    out, _ = control_grid
    evaluation.write_report(out, max_plots=2)
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page and "http" not in page.split("<body>")[1]
    md = (out / "report.md").read_text()
    assert "## Leaderboard" in md and "activation_patching" in md and "arch gap" in md


# -- plug-in methods, failures, budgets --------------------------------------------------------
USER_METHOD = '''
import numpy as np, torch
from methods import SiteScores

def spread(model, task, *, seed=0, budget=None):
    """Score each (site, position) by the activation's standard deviation over inputs."""
    tokens = torch.as_tensor(task.sample(16, seed=seed).tokens)
    names = [s.name for s in model.sites]
    with torch.no_grad():
        cache = model.run(tokens, cache=names).cache
    return SiteScores({n: cache[n].std(0).mean(-1).numpy() for n in names})

def broken(model, task, *, seed=0, budget=None):
    raise RuntimeError("this method is broken")

def slow(model, task, *, seed=0, budget=None):
    import time
    time.sleep(5)
'''


def test_user_method_by_import_path_through_cli(tmp_path, monkeypatch, capsys):
    from zoo.cli import main

    (tmp_path / "my_interp.py").write_text(textwrap.dedent(USER_METHOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    rc = main(["evaluate", "--method", "my_interp:spread", "--method", "my_interp:broken", "--method", "my_interp:slow", "--task", "parity",
               "--arch", "transformer", "--arch", "rnn", "--kinds", "compiled", "--out", str(out), "--budget", "0.5"])
    assert rc == 0
    rows = {(r["method"], r["family"]): r for r in evaluation.read_results(out)}
    assert len(rows) == 6
    assert rows[("my_interp:spread", "transformer")]["status"] == "ok"
    assert 0.0 <= rows[("my_interp:spread", "transformer")]["auroc"] <= 1.0
    assert rows[("my_interp:broken", "rnn")]["status"] == "failed" and "this method is broken" in rows[("my_interp:broken", "rnn")]["error"]
    assert rows[("my_interp:slow", "rnn")]["status"] == "timeout"
    run = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert {"torch", "numpy", "circuit-zoo"} <= set(run["versions"]) and run["ablation"] == "resample" and run["machine"]["platform"]
    assert "my_interp:spread" in capsys.readouterr().out
    assert main(["report", str(out), "--no-plots"]) == 0 and (out / "report.html").exists()


def test_cli_errors(tmp_path, capsys):
    from zoo.cli import main

    assert main(["evaluate", "--method", "no_such_method", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_trained_kind_reads_the_store_and_retries_missing_models(tmp_path):
    from zoo.training.build import build

    store, out = tmp_path / "store", tmp_path / "eval"
    first = evaluation.evaluate(["oracle_alignment"], ["shift"], ["rnn"], kinds=("trained",), out=out, store=store, progress=lambda *_: None)
    assert [r["status"] for r in first] == ["missing"]
    assert "zoo build --tasks shift --archs rnn" in first[0]["error"]
    build(["shift"], ["rnn"], root=store, kinds=("trained",), max_steps=3, eval_every=0, batch_size=8, progress=lambda *_: None)
    again = evaluation.evaluate(["oracle_alignment"], ["shift"], ["rnn"], kinds=("trained",), out=out, store=store, progress=lambda *_: None)
    assert len(again) == 1 and again[0]["status"] == "ok" and again[0]["reached"] is False  # 3 steps: short of its targets
    assert again[0]["overlap"] == pytest.approx(1.0)  # the oracle reads the trained model's planted ground truth


# -- resume ----------------------------------------------------------------------------------------
def _strip(rows):
    return sorted((json.dumps({k: v for k, v in r.items() if k not in TIME_KEYS}, sort_keys=True) for r in rows))


def test_resume_recomputes_no_finished_cell(tmp_path, monkeypatch):
    args = dict(methods=["activation_patching", "random", "oracle_alignment"], tasks=["parity", "dyck1"], archs=None, kinds=("compiled",),
                seed=0, n_pairs=32, progress=lambda s: None)
    full = evaluation.evaluate(out=tmp_path / "full", **args)
    assert len(full) == 18

    calls = []
    real = grid.evaluate_cell
    monkeypatch.setattr(grid, "evaluate_cell", lambda *a, **k: calls.append(a[:4]) or real(*a, **k))
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(out=tmp_path / "cut", stop_after=7, **args)
    assert len(calls) == 7
    path = tmp_path / "cut" / "results.jsonl"
    before = path.read_text().splitlines()
    with open(path, "a") as f:  # killed mid-write: a torn last line
        f.write('{"method": "random", "task": "par')
    calls.clear()
    resumed = evaluation.evaluate(out=tmp_path / "cut", **args)
    assert len(calls) == 11  # only the unfinished cells
    finished = {tuple(json.loads(line)[k] for k in ("method", "task", "family", "kind")) for line in before}
    assert not finished & {tuple(c) for c in calls}
    assert path.read_text().splitlines()[:7] == before
    assert _strip(resumed) == _strip(full)


def test_demo_end_to_end(tmp_path):
    from zoo.demo import run_demo

    lines = []
    summary = run_demo(out=tmp_path / "demo", task_names=("parity",), print_fn=lines.append, quiet=True)
    text = "\n".join(lines)
    assert "activation_patching" in text and "[ok] oracle scores 1.0" in text
    assert (tmp_path / "demo" / "report.html").exists() and (tmp_path / "demo" / "report.md").exists()
    assert set(summary["methods"]) == {"activation_patching", "probes", "random", "oracle", "random_alignment", "oracle_alignment"}
