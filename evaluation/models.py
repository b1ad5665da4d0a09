"""Models a user saved (``zoo compile --out``, ``zoo train --out``, ``model.save``) as evaluation cells.

``zoo evaluate --model DIR`` scores a method on the model in DIR: the cell's task, family and
kind come from the model's ``config.json`` (its ``meta``: task, max_len, kind; a reparametrized
copy is kind ``reparametrized``), and the row records the directory (``model``), which with the
method, task, family and kind identifies the cell, so two saved models of one task and family are
two cells. A directory that holds no model, a model without ground truth (trained with
``--no-plant``: nothing to score against) or one whose task is unknown is refused before any work,
in one line naming the directory and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SavedModel:
    """A model directory and the cell it makes: task (at the model's max_len), family, kind."""

    path: str  # absolute: the cell's identity does not depend on the folder zoo ran in
    task: str
    family: str
    kind: str
    max_len: int | None = None


def saved_model(directory) -> SavedModel:
    """The cell of the model saved in ``directory`` (read from its config; nothing loaded yet)."""
    import tasks
    from zoo.store import GROUND_TRUTH, read_config

    d = Path(directory)
    config = read_config(d)  # a one-line ModelFileError (a ValueError) names the file and the fix
    meta = config.get("meta") or {}
    if "task" not in meta:
        raise ValueError(f"the model in {d} does not say which task it solves (no 'task' in the meta of its config.json); save it with zoo compile/train --out or model.save after zoo.compile/zoo.train")
    tasks.get(meta["task"])  # an unknown task: one line naming the valid ones
    if GROUND_TRUTH not in config.get("sha256", {}):
        raise ValueError(f"the model in {d} has no ground truth (trained with --no-plant?): there is nothing to score a method against; evaluate a compiled or planted model")
    kind = "reparametrized" if "reparametrized" in meta else str(meta.get("kind", "compiled"))
    return SavedModel(str(d.resolve()), meta["task"], config["family"], kind, meta.get("max_len"))


def load_saved(saved: SavedModel):
    """``(model, task)``: the model, verified by :func:`zoo.store.load`, and its task at its max_len."""
    import tasks
    import zoo

    model = zoo.load(saved.path)
    return model.eval(), tasks.get(saved.task, max_len=saved.max_len).with_decoys(bool(model.meta.get("decoys")))  # as evaluation.grid.scoring_task
