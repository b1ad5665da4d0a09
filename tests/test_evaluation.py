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
    assert M.cpr_cmd([0, 0.5, 1], [1, 1, 1]) == (1.0, 0.0)
    cpr, cmd = M.cpr_cmd([0, 1], [0, 1])
    assert cpr == pytest.approx(0.5) and cmd == pytest.approx(0.5)


def test_auroc_null_matches_simulation():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(20, bool), np.zeros(50, bool)]
    sims = [M.auroc(rng.random(70), labels) for _ in range(3000)]
    assert np.std(sims) == pytest.approx(M.auroc_null_sd(20, 50), rel=0.08)


def test_subspace_overlap():
    from evaluation.alignment_scores import subspace_overlap

    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((8, 8)))[0].T
    assert subspace_overlap(q[:3], q[:3]) == pytest.approx(1.0)
    assert subspace_overlap(q[:3], q[3:5]) == pytest.approx(0.0, abs=1e-12)
    assert subspace_overlap(q[:2], q[:4]) == pytest.approx(1.0)  # nested
    assert subspace_overlap(q[:2], q[[0, 5]]) == pytest.approx(0.5)  # one shared direction of two
    assert subspace_overlap(q[:2], np.eye(5)[:2]) == 0.0  # different widths: different sites


def test_bootstrap_intervals_and_the_paired_gap():
    point, lo, hi = M.bootstrap_ci([1.0, 2.0, 3.0, float("nan")], seed=0)
    assert point == 2.0 and lo <= 2.0 <= hi
    assert M.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert M.bootstrap_ci([0.2, 0.4], seed=3) == M.bootstrap_ci([0.2, 0.4], seed=3)
    table = {("t1", "k"): {"a": 1.0, "b": 0.5}, ("t2", "k"): {"a": 1.0, "b": 0.5}, ("t3", "k"): {"a": 0.7}}  # t3 is not paired
    gap = M.paired_gap(table)
    assert gap["gap"] == (0.5, 0.5, 0.5) and (gap["high"], gap["low"], gap["units"]) == ("a", "b", 2)
    rng = np.random.default_rng(0)  # scores that ignore the family: the gap's interval holds 0
    same = {(f"t{i}", "k"): dict(zip("abc", rng.random(3))) for i in range(40)}
    point, lo, hi = M.paired_gap(same)["gap"]
    assert lo <= 0.0 <= hi and point > 0


@pytest.mark.parametrize("arch", zoo.FAMILIES)
def test_faithfulness_of_full_empty_and_planted_circuits(arch):
    task = tasks.get("parity").with_decoys()
    model = zoo.compile(task, arch, decoys=True)
    f = M.Faithfulness(model, task, ablation="resample", n=32)
    assert f(M.components(model)) == pytest.approx(1.0)
    assert f(()) == pytest.approx(0.0)
    assert f(model.ground_truth.positive_components()) == pytest.approx(1.0)  # everything outside the planted circuit can be ablated
    assert M.faithfulness_at_size(f, M.components(model), len(model.ground_truth.positive_components()), seed=0) < 0.5  # keeping everything does not win


# -- controls on compiled models ----------------------------------------------------------------
CONTROL_METHODS = ["oracle", "oracle_alignment", "oracle_circuit", "random", "random_alignment", "activation_patching",
                   "activation_variance", "layer_order", "keep_all_circuit"]


@pytest.fixture(scope="module")
def control_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("controls")
    rows = evaluation.evaluate(CONTROL_METHODS, ["parity", "induction", "dyck1"], None, kinds=("compiled", "reparametrized"), out=out, n_pairs=64,
                               progress=lambda s: None, controls=False)
    return out, rows


def test_controls(control_grid):
    _, rows = control_grid
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows if r["status"] != "ok"]
    for r in rows:
        if r["method"].startswith("oracle"):
            assert r["score"] == pytest.approx(1.0, abs=1e-4), (r["method"], r["task"], r["family"], r["kind"], r["score"])
            for k in ("auroc", "precision_at_k", "recall_at_k", "faithfulness_at_k", "iia", "iia_changed", "selectivity", "compactness", "precision", "recall"):
                if r.get(k) is not None:
                    assert r[k] == pytest.approx(1.0, abs=1e-4), (r["task"], r["family"], r["kind"], k, r[k])
    summary = summarize(rows)
    assert not broken(summary), summary["checks"]
    rnd = summary["methods"]["random"]["score"]
    assert rnd[1] <= 0.5 <= rnd[2]
    gap = summary["methods"]["random"]["gap"]
    assert gap[1] <= 0.0 <= gap[2], gap  # a control that ignores the model shows no architecture gap
    ap = summary["methods"]["activation_patching"]
    assert ap["score"][0] > 0.95 and ap["margin"] > 0.3, ap
    for control in ("activation_variance", "layer_order"):
        assert abs(summary["methods"][control]["score"][0] - 0.5) < 0.15, control
    assert summary["methods"]["keep_all_circuit"]["score"][0] < 0.5
    ra = summary["methods"]["random_alignment"]
    assert ra["score"][0] < 0.2 and ra["extra"]["iia"] > ra["extra"]["iia_changed"] + 0.2, ra  # plain IIA credits the outputs a patch leaves alone


def test_alignment_scores_tell_the_variable_from_everything_at_its_site():
    """On compiled sort: the oracle scores 1 on every variable some pair changes an output of
    (``indices`` changes none: the same position in base and source); a location holding nothing
    keeps a plain IIA above 0.5 and scores 0 on changed outputs; the whole last stream site, which
    holds every variable and the decoys, reproduces the counterfactuals but moves the decoys."""
    from evaluation.alignment_scores import alignment_scores, summarize_variables
    from methods.controls import oracle_alignment
    from methods.finding import AlignedVariable, Alignment

    task, model = tasks.get("sort").with_decoys(), zoo.compile("sort", "transformer", decoys=True)
    truth = model.ground_truth
    rows = alignment_scores(oracle_alignment(model, task), model, task, truth, n=64, decode_n=64)
    inert = {v for v, r in rows.items() if r["score"] is None or math.isnan(r["score"])}
    assert inert == {"indices"}, inert
    assert all(r["score"] == 1.0 and r["selectivity"] == 1.0 for v, r in rows.items() if v not in inert), rows
    site = model.site_list()[-1]  # the last stream point
    read = np.abs(model.W_U.detach().numpy()).sum(1) > 0
    unread = np.eye(site.width)[~read][:1]
    out_loc = truth.variables["sorted_value"]
    nothing = Alignment({"sorted_value": AlignedVariable(site.name, unread, "all", 0)})
    row = alignment_scores(nothing, model, task, truth, n=64, decode_n=64)["sorted_value"]
    assert row["iia_changed"] == 0.0 and row["iia"] > 0.5 and row["score"] == 0.0
    whole = Alignment({"sorted_value": AlignedVariable(out_loc.site, np.eye(site.width), "all", 0)})
    row = alignment_scores(whole, model, task, truth, n=64, decode_n=64)["sorted_value"]
    assert row["iia_changed"] == 1.0 and row["selectivity"] < 0.5 and row["compactness"] < 0.1 and row["score"] < 0.05, row
    assert summarize_variables(alignment_scores(whole, model, task, truth, n=32, decode_n=32))["missing"] == len(rows) - 1


def test_broken_evaluation_is_flagged(control_grid):
    _, rows = control_grid
    bad = [dict(r, auroc=0.5, score=0.5) if r["method"] == "oracle" else r for r in rows]
    summary = summarize(bad)
    assert broken(summary)
    assert evaluation.render_text(summary).startswith("THE EVALUATION IS BROKEN")


def test_oracles_are_held_to_1_on_every_kind(control_grid):
    _, rows = control_grid
    assert not broken(summarize(rows))
    for oracle in ("oracle", "oracle_alignment", "oracle_circuit"):
        for kind in ("compiled", "trained"):
            off = [dict(r, score=0.9, kind=kind) if r["method"] == oracle else r for r in rows]
            assert broken(summarize(off)), (oracle, kind)  # no kind is exempt
    near = [dict(r, score=0.985) if r["method"] == "oracle_circuit" else r for r in rows]
    assert not broken(summarize(near))  # within the tolerance
    missing = {"method": "oracle", "task": "shift", "family": "rnn", "kind": "trained", "status": "missing", "error": "not built"}
    summary = summarize(rows + [missing])
    assert not broken(summary) and summary["methods"]["oracle"]["failed"] == 0  # not built yet is not a failure


def test_a_degenerate_baseline_near_the_oracle_breaks_the_run(control_grid):
    _, rows = control_grid
    cheat = [dict(r, score=0.95, auroc=0.95) if r["method"] == "activation_variance" else r for r in rows]
    summary = summarize(cheat)
    assert broken(summary) and any("activation_variance" in c["name"] and c["passed"] is False for c in summary["checks"])


def test_a_run_without_controls_says_so():
    rows = [{"method": "activation_patching", "task": "parity", "family": "rnn", "kind": "compiled", "status": "ok", "finding": "site_scores", "score": 0.9}]
    summary = summarize(rows)
    assert not broken(summary) and all(c["passed"] is None for c in summary["checks"])
    assert "[not run] random sits at chance" in evaluation.render_text(summary)


def test_unreached_trained_models_are_left_out_and_counted(control_grid):
    _, rows = control_grid
    extra = [dict(r, kind="trained", reached=False, score=0.0) for r in rows if r["method"] == "activation_patching"]
    summary = summarize(rows + extra)
    ap = summary["methods"]["activation_patching"]
    assert ap["unreached"] == len(extra) and ap["score"][0] > 0.95


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
               "--arch", "transformer", "--arch", "rnn", "--kinds", "compiled", "--out", str(out), "--budget", "0.5", "--no-controls"])
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
    first = evaluation.evaluate(["oracle_alignment"], ["shift"], ["rnn"], kinds=("trained",), out=out, store=store, progress=lambda *_: None, controls=False)
    assert [r["status"] for r in first] == ["missing"]
    assert "zoo build --tasks shift --archs rnn" in first[0]["error"]
    build(["shift"], ["rnn"], root=store, kinds=("trained",), max_steps=3, eval_every=0, batch_size=8, progress=lambda *_: None)
    again = evaluation.evaluate(["oracle_alignment"], ["shift"], ["rnn"], kinds=("trained",), out=out, store=store, progress=lambda *_: None, controls=False)
    assert len(again) == 1 and again[0]["status"] == "ok" and again[0]["reached"] is False  # 3 steps: short of its targets
    assert again[0]["overlap"] == pytest.approx(1.0)  # the oracle reads the trained model's planted ground truth


# -- resume ----------------------------------------------------------------------------------------
def _strip(rows):
    return sorted((json.dumps({k: v for k, v in r.items() if k not in TIME_KEYS}, sort_keys=True) for r in rows))


def test_resume_recomputes_no_finished_cell(tmp_path, monkeypatch):
    args = dict(methods=["activation_patching", "random", "oracle_alignment"], tasks=["parity", "dyck1"], archs=None, kinds=("compiled",),
                seed=0, n_pairs=32, progress=lambda s: None, controls=False)
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
    from methods.registry import CONTROLS

    assert set(summary["methods"]) == {"activation_patching", "probes", *CONTROLS}
    assert "[ok] degenerate baseline activation_variance stays away from the oracle" in text


def test_a_broken_run_exits_non_zero(control_grid, capsys):
    from zoo.cli import BROKEN_EXIT, _broken_exit

    _, rows = control_grid
    assert _broken_exit(summarize(rows)) == 0
    assert _broken_exit(summarize([dict(r, score=0.5) if r["method"] == "oracle" else r for r in rows])) == BROKEN_EXIT
    assert "the evaluation is broken" in capsys.readouterr().err
