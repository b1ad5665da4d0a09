"""``zoo falsify``: the smallest random program and model on which a method's finding violates a property.

A search draws random programs (:func:`tasks.strategies.programs`), compiles them as the
evaluator does (:func:`zoo.strategies.build`, with the program's decoy clone; refusals are
skipped and counted), runs the method on (a copy of) the model and checks a property of its
finding. The first violation is shrunk by hypothesis (``find``,
seeded, no example database) toward fewer nodes, fewer symbols, shorter inputs and, for
``patch``, a shorter intervention; the smallest case is printed (the program as ``zoo tasks
NAME`` prints one, the family, the input, the scores) and saved (each model with
``model.save``, and ``case.json``), so that ``zoo falsify --rerun DIR`` reruns it.

Properties (a *violation* is what the search looks for):

- ``score``: the headline score of the finding, ``evaluation.grid.score_finding(...)["score"]``,
  is below ``threshold`` (default 0.9). An undefined score (None) is not a violation.
- ``transfer``: the method's conclusion (headline score >= ``threshold``) differs between the
  families that compile the same program (at least two must).
- ``patch``: the method returns an ``Alignment``; patching a variable's aligned location at a
  drawn position with a drawn source input does not reproduce the interpreter's counterfactual
  on at least ``threshold`` (default 1.0, i.e. every) counted output.

Programs whose output is the same on all 64 sampled inputs at every position (a constant, or a
function of the position alone) are skipped unless ``varying`` is False: no input-based method
can see anything in them. A method that raises is a violation too ("raised"); a search locks
onto the kind of the first violation it finds, so shrinking keeps to it. Scores come from
``score_finding`` as a black box: only its row's ``score`` (the headline) and the row's other
scalar entries (printed) are used.
Same arguments, same seed: the same cases, the same result (methods and scoring are seeded with
``seed``; the search with ``random.Random(seed)``).
"""

from __future__ import annotations

import builtins
import copy
import json
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

PROPERTIES = ("score", "transfer", "patch")
DEFAULT_THRESHOLD = {"score": 0.9, "transfer": 0.9, "patch": 1.0}
CASE_FILE = "case.json"


class OutOfTime(Exception):
    """The search ran past ``max_seconds``."""


@dataclass(frozen=True)
class Search:
    """What ``zoo falsify`` searches for, and within what limits."""

    method: str
    property: str = "score"
    threshold: float | None = None  # None: DEFAULT_THRESHOLD[property]
    archs: tuple[str, ...] = ("transformer", "rnn", "ssm")
    kinds: tuple[str, ...] = ("compiled",)
    max_nodes: int = 4
    min_nodes: int = 1  # at least one computed variable: the output is never the tokens themselves
    max_symbols: int = 3
    max_len: int = 6
    primitives: tuple[str, ...] | None = None
    varying: bool = True  # skip programs whose output does not depend on the input
    decoys: bool = True  # compile each program with its decoy clone, as the evaluator does
    seed: int = 0
    budget: int | None = 16  # the method's own budget (its number of inputs)
    n: int = 32  # inputs score_finding measures faithfulness on
    n_pairs: int = 64  # held-out pairs score_finding measures IIA on
    max_seconds: float = 120.0
    max_examples: int = 2000

    def __post_init__(self):
        import methods
        from zoo.compile import check_family
        from zoo.strategies import KINDS

        if self.property not in PROPERTIES:
            raise ValueError(f"unknown property {self.property!r}; valid: {', '.join(PROPERTIES)}")
        methods.get(self.method)  # an unknown method: a one-line error before any work
        for a in self.archs:
            check_family(a)
        for k in self.kinds:
            if k not in KINDS:
                raise ValueError(f"unknown kind {k!r}; valid: {', '.join(KINDS)}")
        if self.property == "transfer" and len(self.archs) < 2:
            raise ValueError(f"property 'transfer' compares families: give at least two archs, got {', '.join(self.archs)}")
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds {self.max_seconds} must be positive")

    @builtins.property  # the field ``property`` shadows the builtin in this class body
    def limit(self) -> float:
        return DEFAULT_THRESHOLD[self.property] if self.threshold is None else float(self.threshold)

    def strategy_args(self) -> dict:
        return {"max_nodes": self.max_nodes, "min_nodes": self.min_nodes, "max_symbols": self.max_symbols, "max_len": self.max_len,
                "primitives": self.primitives}


@dataclass
class Case:
    """A drawn case: the program, its families (one, or those compared by ``transfer``), the
    kind, and for ``patch`` the intervention (base, source, position)."""

    task: object  # a tasks.spec.SpecTask (task.spec: the program as data)
    archs: tuple[str, ...]
    kind: str = "compiled"
    reparam_seed: int | None = None
    intervention: tuple | None = None
    models: dict = field(default_factory=dict, repr=False)

    @property
    def spec(self):
        return self.task.spec


@dataclass
class Outcome:
    """What a case gives: whether it violates the property, why, the scores per family, the input shown."""

    violated: bool
    kind: str  # the property's name, "raised <Error>", or "none"
    why: str
    scores: dict  # family -> {"score": ..., other scalar entries of score_finding's row}
    example: dict | None = None  # an input: tokens (and source, variable, position, outputs)


# -- evaluating a case ------------------------------------------------------------------------------
def _scalar_row(row: dict) -> dict:
    """The headline ``score`` (None when undefined) and the row's other numbers."""
    numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "score"}
    return {"score": row.get("score"), **numbers}


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def evaluate(search: Search, case: Case) -> Outcome:
    """Run the method on each model of ``case`` and check the property (deterministic)."""
    import methods
    from evaluation.grid import score_finding

    task = case.task
    rows, findings = {}, {}
    for arch in case.archs:
        model = case.models[arch]
        try:  # on a copy, as the evaluation grid runs a method: a method may not change the model it is scored on
            finding = methods.run(search.method, copy.deepcopy(model), task, seed=search.seed, budget=search.budget)
        except Exception as err:  # a crash is a finding about the method too
            return Outcome(True, f"raised {type(err).__name__}", f"{search.method} raised {type(err).__name__} on the {arch} model: {str(err)[:300]}", rows)
        findings[arch] = finding
        if search.property != "patch":
            rows[arch] = _scalar_row(score_finding(finding, model, task, seed=search.seed, n=search.n, n_pairs=search.n_pairs))
    limit = search.limit
    if search.property == "score":
        arch = case.archs[0]
        s = rows[arch].get("score")
        violated = s is not None and s < limit
        return Outcome(violated, "score" if violated else "none", f"the headline score of {search.method} on the {arch} model is {_fmt(s)} ({'below' if violated else 'not below'} {limit:g})",
                       rows, _example(search, case, arch, findings[arch]))
    if search.property == "transfer":
        defined = {a: r["score"] for a, r in rows.items() if r.get("score") is not None}
        verdicts = {a: s >= limit for a, s in defined.items()}
        violated = len(set(verdicts.values())) > 1
        said = ", ".join(f"{a} {_fmt(s)} ({'recovers' if verdicts[a] else 'misses'})" for a, s in defined.items())
        low = min(defined, key=defined.get) if defined else case.archs[0]
        return Outcome(violated, "transfer" if violated else "none",
                       f"the conclusion of {search.method} (score >= {limit:g}) {'differs between' if violated else 'agrees across'} families: {said or 'no defined score'}",
                       rows, _example(search, case, low, findings.get(low)) if defined else None)
    arch = case.archs[0]
    return _patch_outcome(search, case, arch, findings[arch])


def _patch_outcome(search: Search, case: Case, arch: str, finding) -> Outcome:
    from methods.finding import alignment_predictions

    if finding.kind != "alignment":
        raise ValueError(f"property 'patch' needs a method that returns an Alignment; {search.method} returned {finding.kind}")
    task, model = case.task, case.models[arch]
    base, source, position = case.intervention
    worst = None
    for name, aligned in finding.variables.items():
        pos = np.full(base.shape[0], position, dtype=np.int64)
        _, _, _, got = alignment_predictions(model, task, name, aligned, pairs=(base, source, name, pos))
        cf = task.counterfactual(base, source, name, pos)
        counted = cf.mask
        if not counted.any():
            continue
        share = float((got[counted] == cf.outputs[counted]).mean())
        if worst is None or share < worst[1]:
            worst = (name, share, got, cf)
    if worst is None:
        return Outcome(False, "none", "no aligned variable has a counted output at this position", {arch: {}})
    name, share, got, cf = worst
    violated = share < search.limit
    example = {"variable": name, "position": int(position), "base": base[0].tolist(), "source": source[0].tolist(),
               "patched": [int(task.classes[c]) if m else None for c, m in zip(got[0], cf.mask[0])],
               "counterfactual": [int(task.classes[c]) if m else None for c, m in zip(cf.outputs[0], cf.mask[0])],
               "site": finding.variables[name].site}
    why = (f"patching the location {search.method} gives {name!r} ({finding.variables[name].site}) at position {position} "
           f"reproduces {share:.0%} of the counterfactual outputs ({'below' if violated else 'not below'} {search.limit:.0%})")
    return Outcome(violated, "patch" if violated else "none", why, {arch: {"patched_share": share}}, example)


def _example(search: Search, case: Case, arch: str, finding) -> dict | None:
    """The input to show: for an Alignment, the first sampled intervention its location gets
    wrong (the least accurate variable); otherwise the first sampled input and its outputs."""
    task = case.task
    if finding is not None and finding.kind == "alignment":
        from methods.finding import alignment_predictions

        model = case.models[arch]
        for name, aligned in finding.variables.items():
            base, source, _, position = task.sample_interventions(search.n_pairs, seed=search.seed, variable=name)
            _, _, _, got = alignment_predictions(model, task, name, aligned, pairs=(base, source, name, position))
            cf = task.counterfactual(base, source, name, position)
            wrong = cf.mask & (got != cf.outputs)
            if wrong.any():
                i = int(np.argwhere(wrong)[0][0])
                show = lambda out: [int(task.classes[c]) if m else None for c, m in zip(out[i], cf.mask[i])]  # noqa: E731
                return {"variable": name, "position": int(position[i]), "base": base[i].tolist(), "source": source[i].tolist(),
                        "patched": show(got), "counterfactual": show(cf.outputs), "site": aligned.site}
    sample = task.sample(1, seed=search.seed)
    return {"tokens": sample.tokens[0].tolist(), "outputs": [int(task.classes[c]) if c >= 0 else None for c in sample.targets[0]]}


# -- drawing cases ----------------------------------------------------------------------------------
def cases(search: Search, stats: Counter):
    """The hypothesis strategy of :class:`Case` s the search draws (refusals: ``assume``)."""
    from hypothesis import assume, event
    from hypothesis import strategies as st

    from tasks import strategies as task_strategies
    from zoo.compile import CompileError
    from zoo.strategies import build

    programs = task_strategies.programs(**search.strategy_args())

    @st.composite
    def draw_case(draw):
        task = draw(programs)
        if search.varying and not _varies(task):
            event("output constant on sampled inputs")
            assume(False)
        archs = search.archs if search.property == "transfer" else (draw(st.sampled_from(search.archs)),)
        kind = draw(st.sampled_from(search.kinds))
        seed = draw(st.integers(0, 2**16)) if kind == "reparametrized" else None
        models = {}
        for arch in archs:
            try:
                models[arch] = build(task, arch, kind, seed, stats, decoys=search.decoys)
            except CompileError as err:
                event(f"{arch} refused {err.primitive}")
        assume(len(models) >= (2 if search.property == "transfer" else 1))
        intervention = None
        if search.property == "patch":  # at max_len (shrinking max_len shortens it), the position shrinks toward the last
            base, source = draw(task_strategies.pairs(task, max_size=1, length=task.max_len))
            intervention = (base, source, base.shape[1] - 1 - draw(st.integers(0, base.shape[1] - 2)))
        return Case(task, tuple(models), kind, seed, intervention, models)

    return draw_case()


def _varies(task) -> bool:
    """Whether the output differs between sampled inputs at some position (not only along t)."""
    targets = task.sample(64, seed=0).targets
    for t in range(targets.shape[1]):
        read = targets[:, t][targets[:, t] >= 0]
        if len(np.unique(read)) >= 2:
            return True
    return False


# -- the search -------------------------------------------------------------------------------------
@dataclass
class Result:
    search: Search
    case: Case | None
    outcome: Outcome | None
    tried: int
    refused: int
    found_seconds: float | None
    seconds: float
    shrinks: int
    finished: bool  # False: stopped at max_seconds (the case shown is the smallest so far)


def _size_key(case: Case) -> tuple:
    """What "smallest" means: variables, nodes, symbols, max_len, then the input's length."""
    n_vars, symbols, max_len = case.spec.size
    return (n_vars, len(case.spec.nodes), symbols, max_len, case.intervention[0].shape[1] if case.intervention is not None else 0)


def _size_line(case: Case) -> str:
    n_vars, symbols, max_len = case.spec.size
    line = f"{n_vars} variables, {len(case.spec.nodes)} nodes, {symbols} symbols, max_len {max_len}, {case.archs[0] if len(case.archs) == 1 else 'families ' + ', '.join(case.archs)}"
    return line + (f", input length {case.intervention[0].shape[1]}" if case.intervention is not None else "")


def falsify(search: Search, progress=print) -> Result:
    """Search for the smallest violating case (see the module docstring)."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample, Unsatisfiable

    torch.manual_seed(search.seed)
    stats: Counter = Counter()
    start = time.perf_counter()
    state = {"tried": 0, "best": None, "kind": None, "found": None, "shrinks": 0, "last_report": start}

    def elapsed() -> float:
        return time.perf_counter() - start

    def condition(case: Case) -> bool:
        if elapsed() > search.max_seconds:
            raise OutOfTime
        state["tried"] += 1
        outcome = evaluate(search, case)
        hit = outcome.violated and (state["kind"] is None or outcome.kind == state["kind"])
        if hit:
            if state["best"] is None:
                state["kind"], state["found"] = outcome.kind, elapsed()
                progress(f"[{elapsed():6.1f} s] violation at case {state['tried']}: {outcome.why}; shrinking")
            else:
                state["shrinks"] += 1
            if state["best"] is None or _size_key(case) <= _size_key(state["best"][0]):  # hypothesis' order is not ours: keep the smallest by ours
                state["best"] = (case, outcome)
                size = _size_line(case)
                if state["shrinks"] and size != state.get("size"):
                    progress(f"[{elapsed():6.1f} s] shrunk ({state['shrinks']} steps): {size}")
                state["size"] = size
        elif time.perf_counter() - state["last_report"] > 5 and state["best"] is None:
            refused = sum(v for k, v in stats.items() if len(k) == 2 and k[1] == "refused")
            progress(f"[{elapsed():6.1f} s] {state['tried']} cases checked, {refused} compiles refused, no violation yet")
            state["last_report"] = time.perf_counter()
        return hit

    config = settings(max_examples=search.max_examples, database=None, deadline=None, phases=[Phase.generate, Phase.shrink],
                      suppress_health_check=list(HealthCheck))
    finished = True
    try:
        find(cases(search, stats), condition, settings=config, random=random.Random(search.seed))
    except OutOfTime:
        finished = False
    except (NoSuchExample, Unsatisfiable):
        pass
    refused = sum(v for k, v in stats.items() if len(k) == 2 and k[1] == "refused")
    case, outcome = state["best"] if state["best"] is not None else (None, None)
    if case is not None:
        outcome = evaluate(search, case)  # recomputed: the outcome of exactly the case shown
    return Result(search, case, outcome, state["tried"], refused, state["found"], elapsed(), state["shrinks"], finished)


# -- saving and rerunning -----------------------------------------------------------------------------
def save(result: Result, out) -> Path:
    """Write each model of the case (``model.save``) and ``case.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    case = result.case
    paths = {}
    for arch, model in case.models.items():
        model.save(out / "models" / arch)
        paths[arch] = f"models/{arch}"
    search = asdict(result.search)
    record = {"search": search, "program": case.spec.to_json(), "task": case.spec.name, "archs": list(case.archs), "kind": case.kind,
              "reparam_seed": case.reparam_seed, "models": paths,
              "intervention": None if case.intervention is None else {"base": case.intervention[0].tolist(), "source": case.intervention[1].tolist(),
                                                                     "position": int(case.intervention[2])},
              "outcome": {"violated": result.outcome.violated, "kind": result.outcome.kind, "why": result.outcome.why,
                          "scores": result.outcome.scores, "example": result.outcome.example},
              "found_seconds": result.found_seconds, "seconds": result.seconds, "tried": result.tried, "refused": result.refused}
    (out / CASE_FILE).write_text(json.dumps(record, indent=1))
    return out


def load_case(directory) -> tuple[Search, Case, dict]:
    """The search, the case (models loaded with ``zoo.load``, hashes checked) and the saved record."""
    import zoo
    from tasks.spec import ProgramSpec

    d = Path(directory)
    path = d / CASE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no falsified case in {d}: {CASE_FILE} is missing (run `zoo falsify METHOD --out {d}` first)")
    try:
        record = json.loads(path.read_text())
        s = dict(record["search"])
        for key in ("archs", "kinds", "primitives"):
            if s.get(key) is not None:
                s[key] = tuple(s[key])
        search = Search(**s)
        spec = ProgramSpec.from_json(record["program"])
        models = {arch: zoo.load(d / rel) for arch, rel in record["models"].items()}
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt {path}: {type(err).__name__} {err}; rerun the search that wrote it") from None
    iv = record.get("intervention")
    intervention = None if iv is None else (np.asarray(iv["base"], dtype=np.int64), np.asarray(iv["source"], dtype=np.int64), int(iv["position"]))
    return search, Case(spec.task(), tuple(record["archs"]), record["kind"], record.get("reparam_seed"), intervention, models), record


# -- printing ---------------------------------------------------------------------------------------
def _tokens(task, ids) -> str:
    return " ".join(task.vocab[i] for i in ids)


def _outputs(values) -> str:
    return " ".join("." if v is None else str(v) for v in values)


def report(search: Search, case: Case, outcome: Outcome) -> list[str]:
    """The case in readable form: program, families, input, scores."""
    task = case.task
    spec = case.spec
    lines = [f"program {spec.name} ({spec.mode}, {spec.symbols} symbol(s), max_len {spec.max_len}, {len(task.program)} variables):",
             f"vocabulary: {' '.join(task.vocab)}   output classes: {', '.join(map(str, task.classes))}", "",
             task.program.describe(), ""]
    kind = case.kind + (f" (seed {case.reparam_seed})" if case.reparam_seed is not None else "")
    lines.append(f"family: {', '.join(case.archs)} ({kind})")
    ex = outcome.example
    if ex is not None and "variable" in ex:
        lines += [f"input: base   {_tokens(task, ex['base'])}", f"       source {_tokens(task, ex['source'])}",
                  f"       {ex['variable']} patched at position {ex['position']} through {ex['site']}",
                  f"       outputs with the patch   {_outputs(ex['patched'])}", f"       counterfactual outputs   {_outputs(ex['counterfactual'])}"]
    elif ex is not None:
        lines += [f"input: {_tokens(task, ex['tokens'])}", f"       outputs {_outputs(ex['outputs'])}  (the first input the scores are measured on)"]
    for arch, row in outcome.scores.items():
        if row:
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in row.items())
            lines.append(f"scores ({arch}): {shown}")
    lines.append(f"{'VIOLATION' if outcome.violated else 'no violation'} ({search.property}): {outcome.why}")
    return lines
