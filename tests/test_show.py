"""``zoo show`` and ``evaluation.show.draw_model``: pictures of a model's ground truth and a finding."""

from __future__ import annotations

import numpy as np
import pytest

import methods
import tasks
import zoo
from evaluation.show import draw_model, overlay_of, picture_of


@pytest.mark.parametrize("family", zoo.FAMILIES)
def test_the_picture_holds_the_ground_truth_row_by_row(family):
    task = tasks.get("parity")
    model = zoo.compile(task, family)
    pic = picture_of(model, task)
    truth = model.ground_truth
    assert [r.name for r in pic.rows] == [s.name for s in model.sites] and pic.T == model.max_len
    index = pic.row_index()
    assert {pic.rows[i].name for i in np.flatnonzero(pic.circuit.any(1))} == set(truth.circuit)
    for var, loc in truth.variables.items():
        assert np.flatnonzero(pic.variables[var].any(1)).tolist() == [index[loc.site]]
    assert pic.readout.tolist() == task.readout_mask(np.zeros((1, pic.T), int))[0].tolist()
    fig = draw_model(model, task)
    assert len(fig.axes) == 1 and fig.get_suptitle() == f"parity / {family} / compiled"


def test_a_finding_of_each_kind_lands_on_the_same_grid():
    task = tasks.get("parity")
    model = zoo.compile(task, "transformer")
    pic = picture_of(model, task)
    scores = overlay_of(pic, methods.run("activation_patching", model, task, budget=8))
    assert scores.scores.shape == pic.circuit.shape and np.nanmax(scores.scores) > 0
    aligned = overlay_of(pic, methods.run("oracle_alignment", model, task))
    assert all(label.endswith("\u2713") for label in aligned.labels.values())  # every variable at its ground-truth site
    assert all((aligned.placed[v] == pic.variables[v]).all() for v in pic.variables)
    kept = overlay_of(pic, methods.run("oracle_circuit", model, task))
    assert (kept.kept.any(1) == pic.circuit.any(1)).all()
    fig = draw_model(model, task, methods.run("oracle_alignment", model, task))
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2


def test_zoo_show_writes_a_png_for_a_task_or_a_saved_model_and_says_where(tmp_path, capsys):
    from zoo.cli import main

    out = tmp_path / "pics" / "parity-rnn.png"
    assert main(["show", "parity", "--arch", "rnn", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.read_bytes()[:4] == b"\x89PNG"
    zoo.compile("dyck1", "ssm").save(tmp_path / "dyck1-ssm")
    out2 = tmp_path / "dyck1-ssm-probes.png"
    assert main(["show", str(tmp_path / "dyck1-ssm"), "--method", "probes", "--method-budget", "16", "--out", str(out2)]) == 0
    assert out2.exists()
    assert main(["show", "parity"]) == 2
    assert "needs --arch" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "dyck1-ssm"), "--arch", "rnn"]) == 2
    assert "is a ssm model, not rnn" in capsys.readouterr().err
