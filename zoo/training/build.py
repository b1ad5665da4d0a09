"""``build``: compile and train the (task, family) grid into a store directory.

Layout of a store::

    STORE/compiled/<task>-<family>/            a compiled model (zoo.store format)
    STORE/trained/<task>-<family>-seed<s>/     a trained model with its card
    STORE/build.jsonl                          one JSON line per finished or refused job

Each job writes into ``<name>.partial`` and renames it when complete, so an interrupted build
never leaves a half-written model that looks finished; the next build deletes stale
``.partial`` directories and redoes only those jobs. A job is skipped when its directory loads
(``zoo.store.load``: hashes, shapes and, for trained models, the card all check out); a
trained model that missed its targets is kept (its card says so) and retrained only with
``retry_missed=True`` (say, with a larger ``max_minutes``).
Sharding: ``shard=(i, n)`` (``0 <= i < n``) takes every n-th job of the fixed job order, so an
array job of n workers splits the grid with no overlap. Pairs a compiler refuses are recorded
as refused (the trained model is still trained: planting then uses the depth-rule alignment).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import tasks as tasks_pkg

from .. import store


def default_store() -> Path:
    """``$CIRCUIT_ZOO_STORE``, else ``$XDG_CACHE_HOME/circuit-zoo``, else ``~/.cache/circuit-zoo``."""
    if os.environ.get("CIRCUIT_ZOO_STORE"):
        return Path(os.environ["CIRCUIT_ZOO_STORE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "circuit-zoo"


def jobs(task_names, archs, kinds=("compiled", "trained"), seed: int = 0) -> list[tuple[str, str, str]]:
    """The fixed job order: (kind, task, family) for every task, family and kind."""
    return [(kind, t, a) for t in task_names for a in archs for kind in kinds]


def job_dir(root: Path, kind: str, task: str, arch: str, seed: int = 0) -> Path:
    return root / kind / (f"{task}-{arch}" if kind == "compiled" else f"{task}-{arch}-seed{seed}")


def is_valid(directory: Path, retry_missed: bool = False) -> bool:
    """Whether ``directory`` holds a loadable model (and, with ``retry_missed``, one that reached its targets)."""
    try:
        model = store.load(directory)
    except Exception:
        return False
    return not (retry_missed and model.meta.get("kind") == "trained" and not model.meta["card"].get("reached", True))


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 1)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} must look like i/n, e.g. 0/4 (i counts from 0)") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return (i, n)


def build(task_names=None, archs=None, *, root=None, shard=(0, 1), seed: int = 0, kinds=("compiled", "trained"), plant: bool = True,
          max_steps: int | None = None, max_minutes: float | None = None, retry_missed: bool = False, progress=print, **train_kwargs) -> list[dict]:
    """Compile and train the grid into ``root`` (see the module docstring); returns this run's records."""
    from ..compile import FAMILIES, CompileError, check_family, compile

    from .train import train

    task_names = list(task_names or tasks_pkg.names())
    for t in task_names:
        tasks_pkg.get(t)  # unknown task: a clear error before any work
    archs = [check_family(a) for a in (archs or FAMILIES)]
    root = Path(root) if root is not None else default_store()
    root.mkdir(parents=True, exist_ok=True)
    i, n = shard
    mine = [j for k, j in enumerate(jobs(task_names, archs, kinds, seed)) if k % n == i]
    records = []
    for k, (kind, task, arch) in enumerate(mine):
        d = job_dir(root, kind, task, arch, seed)
        partial = d.with_name(d.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        if d.exists() and is_valid(d, retry_missed):
            progress(f"[{k + 1}/{len(mine)}] {kind} {task} {arch}: already in the store, skipped")
            continue
        if d.exists():
            shutil.rmtree(d)  # invalid (corrupt or incomplete): redo
        start = time.perf_counter()
        record = {"kind": kind, "task": task, "family": arch, "seed": seed}
        try:
            if kind == "compiled":
                model = compile(task, arch)
            else:
                model = train(task, arch, plant=plant, seed=seed, max_steps=max_steps, max_minutes=max_minutes, **train_kwargs)
                c = model.meta["card"]
                record.update(accuracy=c["heldout_accuracy"], min_iia=c["min_iia"], steps=c["steps"], params=c["params"], reached=c["reached"])
        except CompileError as err:
            record.update(status="refused", reason=str(err))
            progress(f"[{k + 1}/{len(mine)}] {kind} {task} {arch}: refused ({err})")
        else:
            model.save(partial)
            partial.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, d)
            record.update(status="ok", path=str(d))
            progress(f"[{k + 1}/{len(mine)}] {kind} {task} {arch}: done in {time.perf_counter() - start:.1f} s" + (
                f" (accuracy {record['accuracy']:.4f}, min IIA {record['min_iia'] if record['min_iia'] is not None else '-'})" if kind == "trained" else ""))
        record["seconds"] = round(time.perf_counter() - start, 2)
        with open(root / "build.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        records.append(record)
    return records
