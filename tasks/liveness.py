"""Which (variable, position) values a counted readout can depend on.

``live(program, readout)`` walks the program backwards from its output: the output is live at
the readout positions; a per-position variable (``Map``, ``Sum``) passes its liveness at t to its
inputs at t; an ``Aggregate`` live at t makes its query live at t and its key and value live at
every selectable ``j <= t`` (``j == t - k`` for an offset); a ``Scan`` live at t makes its input
live at every ``j <= t``. It is an over-approximation over inputs (a key==query selection may not
pick j on a given input), which is what a ground truth per (component, position) needs: a cell
is in the circuit when *some* input's counted readout depends on it.

``carried(live)`` is the liveness of a state that carries a variable forward in time (an RNN's
counter, an SSM's state channel): the value held at j is read at every later t where the
variable is live.

Variables that the output does not read (decoys) are never live.
"""

from __future__ import annotations

import numpy as np

from .program import Aggregate, Program, Scan


def live(program: Program, readout: np.ndarray) -> dict[str, np.ndarray]:
    """Per variable, a boolean ``[L]``: whether a readout at a position of ``readout`` (a
    boolean ``[L]``) can depend on its value at that position."""
    readout = np.asarray(readout, dtype=bool)
    L = readout.shape[0]
    out = {v.name: np.zeros(L, dtype=bool) for v in program.variables}
    out[program.output.name] |= readout
    for v in reversed(program.variables):
        here = out[v.name]
        if not here.any():
            continue
        if isinstance(v, Aggregate):
            sel = v.select
            if sel.kind == "offset":
                k = sel.offset
                later = np.zeros(L, dtype=bool)
                later[: max(L - k, 0)] = here[k:]
            else:
                later = carried(here)
            if sel.query is not None:
                out[sel.query.name] |= here
            if sel.key is not None:
                out[sel.key.name] |= later
            if v.value is not None:
                out[v.value.name] |= later
        elif isinstance(v, Scan):
            out[v.inputs[0].name] |= carried(here)
        else:
            for u in v.inputs:
                out[u.name] |= here
    return out


def carried(here: np.ndarray) -> np.ndarray:
    """``[L]``: live at j if live at some t >= j (a reverse cumulative or)."""
    return np.logical_or.accumulate(np.asarray(here, dtype=bool)[::-1])[::-1].copy()
