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
    task = tasks.get("parity").with_decoys(True)
    model = zoo.compile(task, family, decoys=True)
    pic = picture_of(model, task)
    truth = model.ground_truth
    components = {c.name: c for c in model.components}
    split = {c.site for c in components.values() if c.name != c.site}  # sites drawn as their blocks
    assert [r.name for r in pic.rows] == [n for s in model.sites for n in ([c.name for c in components.values() if c.site == s.name] or [s.name])]
    assert pic.T == model.max_len
    for i, r in enumerate(pic.rows):  # a component's cells are its own, position by position; a site's its circuit membership
        want = truth.cells[r.name] if r.name in truth.cells else [1 if r.site in truth.circuit else 0] * pic.T
        assert pic.cells[i].tolist() == list(want)
    for var, loc in truth.variables.items():
        where = pic.decoys[var] if var in truth.decoys else pic.variables[var]
        rows = {pic.rows[i].name for i in np.flatnonzero(where.any(1))}
        holders = {c for c, held in truth.component_variables.items() if var in held and c != components[c].site}  # blocks holding it
        assert rows == holders | ({loc.site} if loc.site not in split else set())
    assert set(pic.decoys) == set(truth.decoys) and not set(pic.variables) & set(truth.decoys)
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
    assert all((aligned.placed[v] <= pic.variables[v]).all() and aligned.placed[v].any() for v in pic.variables)
    kept = overlay_of(pic, methods.run("oracle_circuit", model, task))
    assert {pic.rows[i].site for i in np.flatnonzero(kept.kept.any(1))} <= {r.site for r in pic.rows}
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
