"""The evaluation grid: every (method, task, family, kind) cell scored and written as it finishes.

``evaluate(methods, tasks, archs, kinds=("compiled", "reparametrized"), out=DIR, seed=0,
time_limit=None, models=())`` appends one JSON line per cell to ``DIR/results.jsonl`` as soon as
the cell finishes, so an interrupted run resumes: cells already in the file (finished or failed)
are skipped, a torn last line is ignored. A method that raises, or runs past ``time_limit``
wall-clock seconds (enforced with a SIGALRM timer in the main thread), becomes a failed cell
carrying the error and the grid goes on. (``budget`` is a method's own amount of work, inputs
or pairs: ``method_budget`` here; ``evaluate(budget=)`` is the old name of ``time_limit``.) A
long method's progress reports (:mod:`methods.progress`) are printed through ``progress``, at
most one line every few seconds. Each invocation appends a record of the run (versions of torch,
numpy and the package, the seed, the ablation, the machine) to ``DIR/runs.jsonl``.

Kinds: ``compiled`` (``zoo.compile(task, family, decoys=True)``: the program and its decoy
clone, :mod:`tasks.decoys`), ``reparametrized`` (``zoo.reparametrize(model, seed=seed + 1)``:
rotated/permuted bases, permuted heads, ground truth moved along), and ``trained``: the planted
model that ``zoo build`` put in the zoo store (``store=`` or the default store; seed 0).
``models``: directories of saved models, each a cell whose task, family and kind its config
gives (:mod:`evaluation.models`). A trained cell whose model is not in the store is recorded as
``missing`` with the ``zoo build`` command that makes it, and the grid goes on; a missing cell
is retried by the next run. Trained models that missed their targets on their card are scored
all the same, and the cell carries ``reached: false`` (summaries leave them out of the
architecture gap and count them).

Scores per finding kind (:mod:`evaluation.metrics`, :mod:`evaluation.alignment_scores`), and the
cell's headline ``score``:

- SiteScores: ``auroc`` (headline: node AUROC over (component, position) cells, the ground
  truth's cells labelled neither skipped), ``auroc_signed``, ``site_auroc`` (the same at the
  grain of whole sites, a second column), ``precision_at_k`` / ``recall_at_k`` /
  ``faithfulness_at_k`` of the top-k components with k the number of components in the circuit,
  ``cpr`` / ``cmd`` over the ranking, and the cell counts; the scores per (component, position)
  are kept for the report's heatmaps.
- Alignment: ``score`` (headline: per variable IIA on changed outputs x selectivity x
  compactness, averaged over the program's variables), ``iia``, ``iia_changed``,
  ``selectivity``, ``compactness``, ``decodes``, ``overlap``, and all of them per variable
  (with the dimension used beside the ground truth's).
- Circuit: ``faithfulness_at_size`` (headline: faithfulness at the ground truth's size, so that
  keeping everything scores what a random circuit of that size scores), ``faithfulness`` of the
  whole circuit, ``precision`` / ``recall`` over components and ``cell_precision`` /
  ``cell_recall`` over cells, ``auroc`` and ``cpr`` / ``cmd`` of its per-component evidence when
  it has some, and ``edge_precision`` / ``edge_recall`` (and ``edge_auroc`` of the path-patching
  scores in ``meta["edge_scores"]``) where the ground truth has edges.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import platform
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from zoo.threads import one_blas_thread

KINDS = ("compiled", "reparametrized", "trained")


class MissingModel(LookupError):
    """A trained model the evaluation wants is not in the zoo store."""


class BudgetExceeded(TimeoutError):
    pass


def cell_key(d: dict) -> tuple:
    return (d["method"], d["task"], d["family"], d["kind"], d.get("model"))  # model: a saved model's directory


def read_results(out) -> list[dict]:
    """The cells in ``out/results.jsonl``, the latest line of each (a cell first recorded as
    ``missing`` and evaluated by a later run keeps the later line); a torn or corrupt line is skipped."""
    path = Path(out) / "results.jsonl"
    rows: dict = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict) and all(k in d for k in ("method", "task", "family", "kind")):
                rows.pop(cell_key(d), None)
                rows[cell_key(d)] = d
    return list(rows.values())


def run_record(seed: int, ablation: str, time_limit, kinds, notes) -> dict:
    import torch

    try:
        from importlib import metadata

        version = metadata.version("circuit-zoo")
    except Exception:  # not installed
        version = "unknown"
    return {"type": "run", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed, "ablation": ablation, "time_limit_s": time_limit,
            "kinds": list(kinds), "notes": list(notes),
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "circuit-zoo": version, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                        "torch_threads": torch.get_num_threads()}}


@contextmanager
def time_limit(seconds):
    """Raise BudgetExceeded after ``seconds`` of wall-clock time (main thread only; elsewhere the
    limit is checked after the method returns)."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise BudgetExceeded(f"ran past its time limit of {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_time_limit = time_limit  # for evaluate_cell, whose parameter time_limit holds the seconds


def cell_seed(seed: int, task: str, family: str, kind: str) -> int:
    """The seed a cell's method and metrics use: the run's seed mixed with a stable hash of
    (task, family, kind), so that cells draw independent inputs (and the random control
    independent scores) while a rerun reproduces every cell exactly."""
    import zlib

    return int(seed) * 1_000_003 + zlib.crc32(f"{task}/{family}/{kind}".encode()) % 1_000_000


def _model(task, family: str, kind: str, seed: int, store=None):
    """The model of a cell, built once for all the methods of a grid that score it (the grid
    visits cells model by model); the last few are kept."""
    return _cached_model(task.name, task.max_len, family, kind, seed, None if store is None else str(store))


@functools.lru_cache(maxsize=4)
def _cached_model(task_name: str, max_len: int, family: str, kind: str, seed: int, store):
    import tasks as tasks_mod

    return _build_model(tasks_mod.get(task_name, max_len=max_len), family, kind, seed, store)


_FAITH: dict = {}  # (id of a cached model, ablation, n, seed) -> Faithfulness: its m(C) cache serves every method


def _faithfulness(model, task, ablation: str, n: int, seed: int):
    from . import metrics as M

    key = (id(model), ablation, n, seed)
    if key not in _FAITH:
        if len(_FAITH) > 16:
            _FAITH.clear()
        _FAITH[key] = (model, M.Faithfulness(model, task, ablation=ablation, n=n, seed=seed))
    return _FAITH[key][1]


def _build_model(task, family: str, kind: str, seed: int, store=None):
    import zoo

    if kind == "trained":
        from zoo.store import ModelFileError
        from zoo.training.build import default_store, job_dir

        path = job_dir(Path(store) if store is not None else default_store(), "trained", task.name, family, 0)
        fix = f"`zoo build --tasks {task.name} --archs {family}" + (f" --store {store}`" if store else "`")
        if not path.exists():
            raise MissingModel(f"no trained {task.name}/{family} model in {path.parent.parent}; make it with {fix}")
        try:
            model = zoo.load(path)
        except ModelFileError as err:
            raise MissingModel(f"the trained {task.name}/{family} model in {path} does not load ({err}); remake it with {fix}") from None
        if model.ground_truth is None:
            raise MissingModel(f"the trained {task.name}/{family} model in {path} is unplanted (no ground truth); delete it and remake it planted with {fix}")
        return model.eval()
    model = zoo.compile(task, family, seed=0, decoys=True)
    if kind == "reparametrized":
        model = zoo.reparametrize(model, seed=seed + 1)
    model.eval()
    return model


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


_REFERENCES: dict = {}  # (task, family, kind, model id, seed) -> the ground truth's own alignment scores (trained models)


def _references(model, task, truth, n_pairs: int, seed: int):
    """The planted alignment's own scores on a trained model (the headline's denominators; see
    :mod:`evaluation.alignment_scores`); None on compiled models, exact by construction."""
    if model.meta.get("kind") != "trained":
        return None
    from .alignment_scores import reference_scores

    key = (model.meta.get("task"), model.family, id(truth), n_pairs, seed)
    if key not in _REFERENCES:
        _REFERENCES[key] = reference_scores(model, task, truth, n=n_pairs, seed=seed)
    return _REFERENCES[key]


def scoring_task(task, model):
    """The task a model is scored against: with its decoys when the model computes them."""
    return task.with_decoys(bool(model.meta.get("decoys")))


def score_finding(finding, model, task, *, ablation: str = "resample", seed: int = 0, n: int = 64, n_pairs: int = 256) -> dict:
    """The metrics of one finding against ``model.ground_truth`` (see module doc)."""
    from . import metrics as M
    from .alignment_scores import alignment_scores, summarize_variables

    truth = model.ground_truth
    task = scoring_task(task, model)
    out: dict = {"finding": finding.kind}
    positive = list(truth.positive_components())
    comps = M.components(model)
    if finding.kind == "site_scores":
        out["auroc"] = M.cell_auroc(finding, model, truth)
        out["auroc_signed"] = M.cell_auroc(finding, model, truth, signed=True)
        out["site_auroc"] = M.site_auroc(finding, model, truth)
        out["cells_positive"], out["cells_negative"] = M.cell_counts(truth)
        if finding.meta.get("edge_scores"):
            es = {tuple(k.split("->")): v for k, v in finding.meta["edge_scores"].items()}
            out["edge_auroc"] = M.edge_auroc(es, truth, list(es))
        faith = _faithfulness(model, task, finding.ablation or ablation, n, seed)
        order = M.ranked(M.component_scores(finding, model, truth), comps)
        top = order[: len(positive)]
        out["precision_at_k"], out["recall_at_k"] = M.precision_recall(top, positive)
        out["faithfulness_at_k"] = faith(top)
        out["cpr"], out["cmd"] = M.cpr_cmd(*faith.curve(order))
        out["ablation"] = faith.ablation
        out["score"] = out["auroc"]
        L = task.max_len
        cells = M.cell_scores(finding, model, L)
        out["site_scores"] = {c: [round(float(x), 5) for x in v] for c, v in cells.items()}  # per component, for the report's heatmaps
        out["truth_cells"] = {c: list(v) for c, v in truth.cells.items()}
        out["truth_sites"] = positive
        out["sites"] = comps
    elif finding.kind == "alignment":
        rows = alignment_scores(finding, model, task, truth, n=n_pairs, seed=seed + 50_000, references=_references(model, task, truth, n_pairs, seed + 50_000))
        out.update(summarize_variables(rows))
        out["variables"] = rows
    else:
        kept = M.expand_sites(finding.components, model)
        out["precision"], out["recall"] = M.precision_recall(kept, positive)
        out["cell_precision"], out["cell_recall"] = M.cell_precision_recall(kept, truth)
        out["size"], out["truth_size"] = len(kept), len(positive)
        faith = _faithfulness(model, task, finding.ablation or ablation, n, seed)
        out["faithfulness"] = faith(kept)
        scores = {c: abs(v) for c, v in finding.scores.items()} if finding.scores else None
        out["faithfulness_at_size"] = M.faithfulness_at_size(faith, kept, len(positive), scores, seed=seed)
        out["ablation"] = faith.ablation
        if scores:  # per-component evidence: rank it like site scores
            from methods.finding import SiteScores

            evidence = SiteScores({}, {c: v for c, v in finding.scores.items() if c in set(comps) | {s.name for s in model.sites}})
            out["auroc"] = M.cell_auroc(evidence, model, truth)
            out["cpr"], out["cmd"] = M.cpr_cmd(*faith.curve(M.ranked(M.component_scores(evidence, model, truth), comps)))
        if truth.edges:
            out["edge_precision"], out["edge_recall"] = M.precision_recall([tuple(e) for e in finding.edges], [tuple(e) for e in truth.edges])
            if finding.meta.get("edge_scores"):
                es = {tuple(k.split("->")): v for k, v in finding.meta["edge_scores"].items()}
                out["edge_auroc"] = M.edge_auroc(es, truth, list(es))
        out["score"] = out["faithfulness_at_size"]
    return _clean(out)


def _clean(x):
    """JSON-safe: non-finite floats as None, numpy scalars as Python numbers, recursively."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return _finite(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


def evaluate_cell(method, task_name: str, family: str, kind: str, *, seed: int = 0, time_limit=None, method_budget=None, ablation: str = "resample",
                  n_pairs: int = 128, store=None, model=None) -> dict:
    """One cell: build the model (or load ``model``, a :class:`evaluation.models.SavedModel`), run
    the method (guarded, within ``time_limit`` seconds), score it."""
    import methods
    import tasks
    from methods.registry import method_name

    cseed = cell_seed(seed, task_name, family, kind)
    row = {"method": method_name(method), "task": task_name, "family": family, "kind": kind, "seed": seed, "cell_seed": cseed}
    saved, model = model, None
    if saved is not None:
        row["model"] = saved.path
    start = time.perf_counter()
    try:
        if saved is not None:
            from .models import load_saved

            model, task = load_saved(saved)
        else:
            task = tasks.get(task_name)
            model = _model(task, family, kind, seed, store)
        if kind == "trained":
            row["reached"] = bool(model.meta["card"]["reached"])
        t0 = time.perf_counter()
        with _time_limit(time_limit):  # the method gets a copy: the model scored is the one built for the grid, untouched
            finding = methods.run(method, copy.deepcopy(model), task, seed=cseed, budget=method_budget)
        row["method_seconds"] = round(time.perf_counter() - t0, 4)
        if time_limit and row["method_seconds"] > time_limit:
            raise BudgetExceeded(f"ran past its time limit of {time_limit} s ({row['method_seconds']:.1f} s)")
        with one_blas_thread():
            row.update(score_finding(finding, model, task, ablation=ablation, seed=cseed, n_pairs=n_pairs))
        row["status"] = "ok"
    except Exception as err:  # a failed cell, the grid goes on
        from zoo.compile import CompileError

        row["status"] = ("refused" if isinstance(err, CompileError) else "timeout" if isinstance(err, BudgetExceeded)
                         else "missing" if isinstance(err, MissingModel) else "failed")
        row["error"] = f"{type(err).__name__}: {err}"
        if row["status"] == "failed":
            row["traceback"] = traceback.format_exc(limit=4)[-2000:]
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row


def evaluate(methods, tasks=None, archs=None, kinds=("compiled", "reparametrized"), out="zoo-eval", seed: int = 0, time_limit=None,
             method_budget=None, ablation: str = "resample", n_pairs: int = 128, progress=print, stop_after=None, store=None,
             controls: bool = True, models=(), budget=None) -> list[dict]:
    """Evaluate every (method, task, family, kind) cell into ``out/results.jsonl`` (see module doc).

    ``controls`` (default on) adds every control (:data:`methods.registry.CONTROLS`: random, the
    oracles and the degenerate baselines) not already listed: a score means something only
    beside them (:mod:`evaluation.summary`).
    ``methods``: names, import paths ``pkg.mod:fn`` or callables; ``tasks`` / ``archs``: default
    every task / family; ``time_limit``: wall-clock seconds per method call; ``method_budget``: the
    method's own ``budget`` (its number of inputs); ``budget``: deprecated, the old name of
    ``time_limit``. ``stop_after``: raise KeyboardInterrupt after that many new cells (to test
    resuming); ``store``: the zoo store the ``trained`` kind loads from (default: ``zoo build``'s
    default); ``models``: saved model directories, one cell per method each, besides the grid
    (``kinds=()`` for none). Returns every cell of the grid in the file.
    """
    if budget is not None:
        import warnings

        warnings.warn("evaluate(budget=) is now time_limit= (seconds per method call); a method's own budget (inputs) is method_budget=", DeprecationWarning, stacklevel=2)
        time_limit = budget if time_limit is None else time_limit
    import tasks as tasks_mod
    import zoo
    from methods.registry import method_name
    from zoo.compile import check_family

    methods = [methods] if isinstance(methods, str) or callable(methods) else list(methods)
    if controls:
        from methods.registry import CONTROLS

        listed = {method_name(m) for m in methods}
        methods += [c for c in CONTROLS if c not in listed]
    task_names = list(tasks) if tasks else list(tasks_mod.names())
    archs = list(archs) if archs else list(zoo.FAMILIES)
    for t in task_names:
        tasks_mod.get(t)  # unknown task: a clear error before any work
    for a in archs:
        check_family(a)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r}; valid: {', '.join(KINDS)}")
    import methods as methods_mod

    for m in methods:
        methods_mod.get(m)  # unknown method: a clear error before any work
    from .models import saved_model

    saved = [saved_model(d) for d in models]  # no model there, no ground truth: a clear error before any work
    notes = []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "runs.jsonl", "a") as f:
        f.write(json.dumps(run_record(seed, ablation, time_limit, kinds, notes)) + "\n")
    done = {cell_key(d) for d in read_results(out) if d.get("status") != "missing"}  # a missing model may be there now
    cells = [(m, t, a, k, None) for t in task_names for a in archs for k in kinds for m in methods]  # model by model: each is built once
    cells += [(m, s.task, s.family, s.kind, s) for s in saved for m in methods]
    total, new = len(cells), 0
    path = out / "results.jsonl"
    _repair_tail(path)
    from methods.progress import listening

    from .progress import throttled

    for i, (m, t, a, k, saved_model_) in enumerate(cells, 1):
        key = (method_name(m), t, a, k, saved_model_ and saved_model_.path)
        label = "/".join(key[:4]) + (f" ({saved_model_.path})" if saved_model_ else "")
        if key in done:
            progress(f"[{i}/{total}] {label}: done before, skipped")
            continue
        if stop_after is not None and new >= stop_after:
            raise KeyboardInterrupt(f"stopped after {new} cells")
        with listening(throttled(progress, f"[{i}/{total}] {label}")):
            row = evaluate_cell(m, t, a, k, seed=seed, time_limit=time_limit, method_budget=method_budget, ablation=ablation, n_pairs=n_pairs, store=store, model=saved_model_)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        done.add(key)
        new += 1
        s = row.get("score")
        what = f"score {s:.3f}" if row["status"] == "ok" and s is not None else (row["status"] if row["status"] != "ok" else "score n/a")
        progress(f"[{i}/{total}] {label}: {what} ({row['seconds']:.2f} s)" + (f"  {short_error(row)}" if "error" in row else ""))
    wanted = {(method_name(m), t, a, k, sm and sm.path) for m, t, a, k, sm in cells}
    return [d for d in read_results(out) if cell_key(d) in wanted]


def short_error(row: dict, limit: int = 300) -> str:
    """A cell's error for the progress line: whole where it names a fix (missing model, refused
    pair, time limit), else its first line, cut at ``limit`` (results.jsonl keeps all of it)."""
    error = row["error"]
    if row.get("status") in ("missing", "refused", "timeout"):
        return error
    first = error.splitlines()[0] if error else ""
    return first if len(first) <= limit and first == error else first[:limit] + " ... (whole error in results.jsonl)"


def _repair_tail(path: Path) -> None:
    """Drop a torn last line (a run killed mid-write) so the next append starts on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
