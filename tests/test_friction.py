"""Friction a newcomer met (issue 33, item 4): each fix with a test that fails without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _modules_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running ``code``."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_zoo_help_and_the_evaluator_do_not_import_lightning():
    help_only = "import zoo.cli\ntry:\n    zoo.cli.main(['--help'])\nexcept SystemExit:\n    pass"
    assert "lightning" not in _modules_after(help_only)
    # the evaluator reads the store's paths from zoo.training.build
    assert "lightning" not in _modules_after("import evaluation.grid, zoo.training.build, zoo.training.cli")


def test_training_names_stay_the_functions_however_their_modules_were_imported():
    import importlib

    import zoo
    import zoo.training
    import zoo.training.build  # binds the submodule on the package: the name must stay the function
    import zoo.training.train

    assert callable(zoo.training.train) and callable(zoo.training.build)
    assert zoo.training.train.__module__ == "zoo.training.train" and zoo.training.build.__module__ == "zoo.training.build"
    assert zoo.train is zoo.training.train
    assert hasattr(importlib.import_module("zoo.training.train"), "LEARNING_RATE")


# -- zoo evaluate --method mymod:fn finds mymod.py in the current folder ------------------------------
def test_a_method_module_in_the_current_folder_is_found(tmp_path, monkeypatch):
    import methods

    (tmp_path / "friction_cwd_method.py").write_text("def spread(model, task, *, seed=0, budget=None):\n    return 'found'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])  # as under the `zoo` script
    monkeypatch.delitem(sys.modules, "friction_cwd_method", raising=False)
    assert methods.get("friction_cwd_method:spread")(None, None) == "found"
    with pytest.raises(ValueError, match="current folder"):
        methods.get("no_such_module_here:fn")


# -- zoo evaluate --model DIR ------------------------------------------------------------------------
def test_evaluate_scores_saved_models_as_cells_of_their_own(tmp_path, capsys):
    import evaluation
    import zoo
    from zoo.cli import main

    model = zoo.compile("parity", "rnn")
    model.save(tmp_path / "mine")
    zoo.reparametrize(model, seed=5).save(tmp_path / "mine-rotated")
    out = tmp_path / "run"
    rc = main(["evaluate", "--method", "oracle_alignment", "--model", str(tmp_path / "mine"), "--model", str(tmp_path / "mine-rotated"), "--out", str(out),
               "--no-controls"])
    assert rc == 0, capsys.readouterr().err
    rows = evaluation.read_results(out)
    assert sorted((r["task"], r["family"], r["kind"], r["model"]) for r in rows) == [
        ("parity", "rnn", "compiled", str((tmp_path / "mine").resolve())), ("parity", "rnn", "reparametrized", str((tmp_path / "mine-rotated").resolve()))]
    assert all(r["status"] == "ok" and r["iia"] == pytest.approx(1.0) for r in rows)
    # rerun: both cells are found done; with --task the grid's cells come too
    assert main(["evaluate", "--method", "oracle_alignment", "--model", str(tmp_path / "mine"), "--task", "parity", "--arch", "rnn", "--kinds", "compiled",
                 "--out", str(out), "--no-controls"]) == 0
    printed = capsys.readouterr().out
    assert "done before, skipped" in printed and len(evaluation.read_results(out)) == 3


def test_evaluate_refuses_a_directory_without_a_model_or_ground_truth_in_one_line(tmp_path, capsys):
    import zoo
    from zoo.cli import main

    assert main(["evaluate", "--method", "random", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json is missing" in err
    model = zoo.compile("parity", "rnn")
    model.ground_truth = None
    model.save(tmp_path / "no-truth")
    assert main(["evaluate", "--method", "random", "--model", str(tmp_path / "no-truth"), "--out", str(tmp_path / "run")]) == 2
    assert "no ground truth" in capsys.readouterr().err


# -- seconds are --time-limit, a method's inputs are its budget -----------------------------------------
def test_time_limit_is_seconds_and_the_old_budget_flag_still_works_with_a_message(tmp_path, capsys):
    import evaluation
    from zoo.cli import main

    common = ["evaluate", "--method", "random", "--task", "parity", "--arch", "rnn", "--kinds", "compiled"]
    assert main([*common, "--time-limit", "30", "--method-budget", "8", "--out", str(tmp_path / "a")]) == 0
    assert "--budget" not in capsys.readouterr().err
    assert main([*common, "--budget", "30", "--out", str(tmp_path / "b")]) == 0
    assert "--budget is now --time-limit" in capsys.readouterr().err
    import json

    for d in ("a", "b"):
        assert json.loads((tmp_path / d / "runs.jsonl").read_text().splitlines()[-1])["time_limit_s"] == 30
    with pytest.warns(DeprecationWarning, match="time_limit"):
        evaluation.evaluate(["random"], ["parity"], ["rnn"], kinds=("compiled",), out=tmp_path / "c", budget=30, progress=lambda *_: None)


# -- messages: whole fixes, short reprs ------------------------------------------------------------------
def test_the_progress_line_keeps_a_missing_models_whole_message(tmp_path):
    import evaluation

    lines = []
    evaluation.evaluate(["random"], ["sort"], ["ssm"], kinds=("trained",), out=tmp_path / "run", store=tmp_path / "empty-store", progress=lines.append)
    assert len(lines[-1]) > 120 and lines[-1].rstrip().endswith(f"--store {tmp_path / 'empty-store'}`")


def test_locations_and_aligned_variables_print_their_basis_as_a_shape():
    import numpy as np

    import zoo
    from methods import AlignedVariable

    loc = zoo.compile("parity", "rnn").ground_truth.variables["ones"]
    assert repr(loc) == f"Location(site={loc.site!r}, basis=<{loc.dim}x{loc.basis.shape[1]}>, lag=0)"
    assert repr(AlignedVariable("L0.hidden", np.eye(4)[:2], score=0.5)) == "AlignedVariable(site='L0.hidden', basis=<2x4>, positions='all', lag=0, score=0.5)"


# -- long methods show progress ------------------------------------------------------------------------
def test_das_reports_progress_to_a_listener_and_the_grid_prints_it_throttled():
    import methods
    import tasks
    import zoo
    from evaluation.progress import throttled
    from methods.progress import Progress, listening

    heard = []
    with listening(heard.append):
        methods.run("das", zoo.compile("parity", "rnn"), tasks.get("parity"), budget=16, steps=6, variables=["ones", "parity"])
    assert heard[0].done == 0 and heard[-1].done == heard[-1].total and "variable ones" in heard[0].what
    assert [p.done for p in heard] == sorted(p.done for p in heard)

    now, printed = [0.0], []
    listen = throttled(printed.append, "[1/2] das/parity/rnn/compiled", every=10, clock=lambda: now[0])
    for t in (1, 5, 11, 12, 25):
        now[0] = t
        listen(Progress(t, 30, "variable ones"))
    assert printed == ["[1/2] das/parity/rnn/compiled: 11/30 variable ones (11 s)", "[1/2] das/parity/rnn/compiled: 25/30 variable ones (25 s)"]


# -- the report -----------------------------------------------------------------------------------------
def _broken_method(model, task, *, seed=0, budget=None):
    raise RuntimeError("this method is broken on purpose")


def test_report_names_failures_says_when_no_controls_ran_and_prints_no_negative_zero(tmp_path):
    import json

    import evaluation
    from evaluation.report import NO_CONTROLS, write_report

    out = tmp_path / "run"
    evaluation.evaluate(["activation_patching", _broken_method], ["parity"], ["transformer"], kinds=("compiled",), out=out, progress=lambda *_: None,
                        controls=False)
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    rows[0]["cpr"] = -0.00001  # rounds to zero: must print as 0.000
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(out)
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (md, page):
        assert "Control checks passed" not in text and NO_CONTROLS.split(",")[0] in text
        assert "this method is broken on purpose" in text and "Cells that did not finish" in text
        assert "-0.000" not in text and "-0.00," not in text


def test_heatmaps_keep_each_methods_own_values_and_fold_the_oracle_into_the_ground_truth(tmp_path):
    import evaluation
    from evaluation.report import _models, heatmap_panels, heatmap_png

    out = tmp_path / "run"
    rows = evaluation.evaluate(["activation_patching", "oracle"], ["parity"], ["transformer"], kinds=("compiled",), out=out, progress=lambda *_: None,
                               controls=False)
    (model_rows,) = _models(rows).values()
    panels, truth, same = heatmap_panels(model_rows)
    assert [m for m, _ in panels] == ["activation_patching"] and same == ["oracle"]
    scores = model_rows[0]["site_scores"]
    assert panels[0][1].max() == max(max(abs(x) for x in v) for v in scores.values())  # not rescaled to 1
    assert truth.shape == panels[0][1].shape
    png = heatmap_png(model_rows)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[20:24], "big") >= 400  # height in pixels: labels at a readable size
