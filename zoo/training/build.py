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
Sharding: ``shard=(i, n)`` (``0 <= i < n``) takes every n-th (task, family) pair of the fixed
order, so an array job of n workers splits the grid with no overlap; ``workers=w`` runs w jobs
at once on one machine (``zoo build --workers 2`` on a 2-core laptop), taking the largest
models first. Pairs a compiler refuses are recorded
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


DEFAULT_MAX_MINUTES = 12.0  # per trained model: a pair that has not reached its targets by then is kept, marked missed
DEFAULT_GIVE_UP_MINUTES = 6.0  # ... and one whose held-out accuracy has not reached 90% stops here (train's give_up_minutes)


def default_store() -> Path:
    """``$CIRCUIT_ZOO_STORE``, else ``$XDG_CACHE_HOME/circuit-zoo``, else ``~/.cache/circuit-zoo``."""
    if os.environ.get("CIRCUIT_ZOO_STORE"):
        return Path(os.environ["CIRCUIT_ZOO_STORE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "circuit-zoo"


def jobs(task_names, archs, kinds=("compiled", "trained"), seed: int = 0) -> list[tuple[str, str, str]]:
    """The fixed job order: (kind, task, family) for every task, family and kind."""
    return [(kind, t, a) for t in task_names for a in archs for kind in kinds]


def shard_jobs(job_list, shard: tuple[int, int]) -> list[tuple[str, str, str]]:
    """Shard ``i`` of ``n``: every n-th (task, family) pair of the fixed order, with all its kinds
    (so the cheap compiled jobs and the costly trained ones spread evenly over the workers)."""
    i, n = shard
    pairs = list(dict.fromkeys((t, a) for _, t, a in job_list))
    mine = set(pairs[i::n])
    return [j for j in job_list if (j[1], j[2]) in mine]


def largest_first(job_list) -> list[tuple[str, str, str]]:
    """The order a pool of workers takes jobs in: the (task, family) pairs by their trained
    model's planned parameter count, largest first, each pair's jobs in the fixed order.
    Longest-processing-time first, with size as the guess at time: a long job that starts last
    holds the whole build up (2 workers simulated on the seconds of an earlier default grid: the
    fixed order ends at 61.7 minutes, this one at 60.3, the best order at 59.1)."""
    from .alignment import plan
    from .train import build_model

    size = {}
    for _, t, a in job_list:
        if (t, a) not in size:
            task = tasks_pkg.get(t)
            size[t, a] = build_model(task, a, 0, plan(task, a)).num_parameters()
    return sorted(job_list, key=lambda job: -size[job[1], job[2]])  # stable: a pair's compiled job stays first


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


def run_job(root: Path, kind: str, task: str, arch: str, seed: int = 0, plant: bool = True, retry_missed: bool = False, **train_kwargs) -> tuple[dict | None, str]:
    """Do one job unless its model is already in the store; returns (record or None if skipped, message)."""
    from ..compile import CompileError, compile

    from .train import train

    d = job_dir(root, kind, task, arch, seed)
    partial = d.with_name(d.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    if d.exists() and is_valid(d, retry_missed):
        return None, f"{kind} {task} {arch}: already in the store, skipped"
    if d.exists():
        shutil.rmtree(d)  # invalid (corrupt or incomplete): redo
    start = time.perf_counter()
    record = {"kind": kind, "task": task, "family": arch, "seed": seed}
    try:
        if kind == "compiled":
            model = compile(task, arch)
        else:
            model = train(task, arch, plant=plant, seed=seed, **train_kwargs)
            c = model.meta["card"]
            record.update(accuracy=c["heldout_accuracy"], min_iia=c["min_iia"], steps=c["steps"], params=c["params"], reached=c["reached"],
                          min_strict=c.get("min_strict"), stopped=c.get("stopped"), min_iia_changed=c.get("min_iia_changed"))
    except CompileError as err:
        record.update(status="refused", reason=str(err))
        message = f"{kind} {task} {arch}: refused ({err})"
    else:
        partial.parent.mkdir(parents=True, exist_ok=True)
        model.save(partial)
        os.replace(partial, d)
        record.update(status="ok", path=str(d))
        message = f"{kind} {task} {arch}: done in {time.perf_counter() - start:.1f} s" + (
            f" (accuracy {record['accuracy']:.4f}, min IIA {record['min_iia'] if record['min_iia'] is not None else '-'})" if kind == "trained" else "")
    record["seconds"] = round(time.perf_counter() - start, 2)
    with open(root / "build.jsonl", "a") as f:  # one short line per O_APPEND write: safe across workers
        f.write(json.dumps(record) + "\n")
    return record, message


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # a worker per core: compile and train on one thread each


def _run_job_star(args) -> tuple[dict | None, str]:
    root, job, kwargs = args
    return run_job(root, *job, **kwargs)


def build(task_names=None, archs=None, *, root=None, shard=(0, 1), seed: int = 0, kinds=("compiled", "trained"), plant: bool = True,
          max_steps: int | None = None, max_minutes: float | None = DEFAULT_MAX_MINUTES,
          give_up_minutes: float | None = DEFAULT_GIVE_UP_MINUTES, retry_missed: bool = False, workers: int = 1, progress=print,
          **train_kwargs) -> list[dict]:
    """Compile and train the grid into ``root`` (see the module docstring); returns this run's records.

    ``workers > 1`` runs that many jobs at once in separate processes (one torch thread each),
    handing the next job to whichever worker is free, the largest models first
    (:func:`largest_first`). ``give_up_minutes``: a pair whose
    accuracy has not reached 90% by then stops (see ``train``). A pair that stops at a time limit
    rather than at its targets stops at a step count that depends on the machine's speed and
    load; a pair that reaches its targets (or stops at ``max_steps``) gets the same weights
    from the same seed wherever it runs.
    """
    from ..compile import FAMILIES, check_family
    from .train import check_minutes

    if int(workers) < 1:
        raise ValueError(f"workers={workers}: need at least 1 (e.g. --workers 2 on a 2-core machine)")
    check_minutes(max_minutes=max_minutes, give_up_minutes=give_up_minutes)
    task_names = list(task_names or tasks_pkg.names())
    for t in task_names:
        tasks_pkg.get(t)  # unknown task: a clear error before any work
    archs = [check_family(a) for a in (archs or FAMILIES)]
    root = Path(root) if root is not None else default_store()
    root.mkdir(parents=True, exist_ok=True)
    mine = shard_jobs(jobs(task_names, archs, kinds, seed), shard)
    kwargs = dict(seed=seed, plant=plant, retry_missed=retry_missed, max_steps=max_steps, max_minutes=max_minutes,
                  give_up_minutes=give_up_minutes, **train_kwargs)
    records = []

    def done(k, result):
        record, message = result
        progress(f"[{k}/{len(mine)}] {message}")
        if record is not None:
            records.append(record)

    if workers <= 1:
        for k, job in enumerate(mine):
            done(k + 1, run_job(root, *job, **kwargs))
        return records
    import multiprocessing

    order = largest_first(mine) if "trained" in kinds else mine
    with multiprocessing.get_context("spawn").Pool(int(workers), initializer=_one_thread) as pool:
        for k, result in enumerate(pool.imap_unordered(_run_job_star, [(root, job, kwargs) for job in order])):
            done(k + 1, result)
    return records
