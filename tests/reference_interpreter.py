"""A slow, obviously-correct interpreter: one example, one position at a time, in plain Python.

It evaluates a program's semantics straight from the definitions in tasks/program.py, with
interchange interventions as a dict {(variable name, position): value}, and serves as the
independent check of the vectorised interpreter.
"""

from __future__ import annotations

from tasks.program import Aggregate, Indices, Map, Scan, Sum, Tokens


def evaluate(program, seq: list[int], overrides: dict | None = None) -> dict[str, list[int]]:
    overrides = overrides or {}
    memo: dict = {}

    def value(v, t: int) -> int:
        key = (v.name, t)
        if key in overrides:
            return overrides[key]
        if key not in memo:
            memo[key] = compute(v, t)
        return memo[key]

    def compute(v, t: int) -> int:
        if isinstance(v, Tokens):
            return seq[t]
        if isinstance(v, Indices):
            return t
        if isinstance(v, Map):
            return int(v.f(*(value(x, t) for x in v.inputs)))
        if isinstance(v, Sum):
            return v.bias + sum(w * value(x, t) for w, x in zip(v.weights, v.inputs))
        if isinstance(v, Scan):
            state = v.init
            for s in range(t + 1):
                state = int(v.f(state, value(v.inputs[0], s)))
                # an intervention on the Scan at s < t does not propagate (protocol: read at t == s)
            return state
        if isinstance(v, Aggregate):
            sel = v.select
            if sel.kind == "all":
                chosen = list(range(t + 1))
            elif sel.kind == "offset":
                chosen = [t - sel.offset] if t - sel.offset >= 0 else []
            else:  # key[j] <op> query[t], the comparison spelled out
                q = value(sel.query, t)
                holds = {"eq": lambda k: k == q, "lt": lambda k: k < q, "le": lambda k: k <= q,
                         "gt": lambda k: k > q, "ge": lambda k: k >= q}[sel.kind]
                chosen = [j for j in range(t + 1) if holds(value(sel.key, j))]
            vals = [value(v.value, j) if v.value is not None else 1 for j in chosen]
            if v.reduce in ("count", "sum"):
                return sum(vals)
            if not vals:
                return v.default
            return {"max": max, "min": min, "last": lambda xs: xs[-1], "first": lambda xs: xs[0]}[v.reduce](vals)
        raise TypeError(type(v))

    return {v.name: [value(v, t) for t in range(len(seq))] for v in program.variables}
