"""Saving and loading models: safetensors weights, a JSON config, a JSON ground truth.

A model directory holds

- ``weights.safetensors``: the state dict (no pickle anywhere);
- ``config.json``: format version, family, the family's config, ``meta`` (task, how the model
  was made, its card) and the sha256 of the two other files;
- ``ground_truth.json``: :class:`zoo.ground_truth.GroundTruth` (absent for unplanted models).

``load`` checks the hashes and the weights' names and shapes against the config, and names the
file and the fix when anything is missing, corrupt or mismatched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .components import check_partition
from .families import family_class
from .ground_truth import GroundTruth
from .model import ZooModel

FORMAT = 1
WEIGHTS, CONFIG, GROUND_TRUTH = "weights.safetensors", "config.json", "ground_truth.json"
TRAINED_CARD_KEYS = ("config", "seed", "steps", "wall_seconds", "heldout_accuracy", "iia", "planted")


class ModelFileError(ValueError):
    """A model directory that is missing, corrupt or does not match its config."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(model: ZooModel, directory) -> Path:
    """Write ``model`` to ``directory`` (created if needed); returns the directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(d / WEIGHTS))
    hashes = {WEIGHTS: _sha256(d / WEIGHTS)}
    if model.ground_truth is not None:
        (d / GROUND_TRUTH).write_text(json.dumps(model.ground_truth.to_json()))
        hashes[GROUND_TRUTH] = _sha256(d / GROUND_TRUTH)
    elif (d / GROUND_TRUTH).exists():
        (d / GROUND_TRUTH).unlink()
    config = {
        "format": FORMAT,
        "family": model.family,
        "config": dataclasses.asdict(model.config),
        "meta": model.meta,
        "partition": model.partition,
        "sha256": hashes,
    }
    (d / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True))
    return d


def read_config(directory) -> dict:
    d = Path(directory)
    if not (d / CONFIG).is_file():
        raise ModelFileError(f"no model in {d}: {CONFIG} is missing (create one with `zoo compile TASK --arch A --out {d}`)")
    try:
        config = json.loads((d / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"corrupt model file {d / CONFIG}: not valid JSON ({err}); re-create the model") from None
    for key in ("format", "family", "config", "sha256"):
        if key not in config:
            raise ModelFileError(f"corrupt model file {d / CONFIG}: the key {key!r} is missing; re-create the model")
    if config["format"] != FORMAT:
        raise ModelFileError(f"{d / CONFIG} has format {config['format']}, this version reads format {FORMAT}; re-create the model")
    return config


def _card_problem(meta: dict) -> str | None:
    """Why a trained model's card (``meta["card"]``) is unusable, or None (see zoo.training.card)."""
    card = meta.get("card")
    if not isinstance(card, dict):
        return "its model card is missing"
    missing = [k for k in TRAINED_CARD_KEYS if k not in card]
    return f"its model card lacks {', '.join(missing)}" if missing else None


def load(directory) -> ZooModel:
    """The model saved in ``directory``, verified against its hashes and config."""
    d = Path(directory)
    config = read_config(d)
    for name, digest in config["sha256"].items():
        path = d / name
        if not path.is_file():
            raise ModelFileError(f"model file {path} is missing; re-create the model")
        if _sha256(path) != digest:
            raise ModelFileError(f"corrupt model file {path}: its sha256 does not match {CONFIG}; re-create the model")
    cls = family_class(config["family"])
    try:
        model = cls(cls.config_class(**config["config"]))
    except TypeError as err:
        raise ModelFileError(f"{d / CONFIG} does not fit the {config['family']} family's config ({err}); re-create the model") from None
    try:
        tensors = load_file(str(d / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"corrupt model file {d / WEIGHTS}: {err}; re-create the model") from None
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(f"{d / WEIGHTS} does not match its config: missing {missing[:3]}, unexpected {extra[:3]}; re-create the model")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ModelFileError(f"{d / WEIGHTS}: tensor {k!r} has shape {tuple(v.shape)}, the config implies {tuple(expected[k].shape)}; re-create the model")
    meta = dict(config.get("meta", {}))
    if meta.get("kind") == "trained":  # a trained model enters the zoo only with its card
        problem = _card_problem(meta)
        if problem:
            raise ModelFileError(f"trained model in {d} is refused: {problem} in {CONFIG} (measured accuracy and IIA must be recorded); re-train it with `zoo train` or `zoo build`")
    model.load_state_dict(tensors)
    model.meta = meta
    try:
        model.partition = check_partition(model.site_list(), config.get("partition", {}))
    except ValueError as err:
        raise ModelFileError(f"corrupt model file {d / CONFIG}: {err}; re-create the model") from None
    if (d / GROUND_TRUTH).is_file() and GROUND_TRUTH in config["sha256"]:
        model.ground_truth = GroundTruth.from_json(json.loads((d / GROUND_TRUTH).read_text()))
    model.eval()
    return model
