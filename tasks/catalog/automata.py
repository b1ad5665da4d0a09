"""Tasks that plant a finite-state automaton with a Scan: permutation composition in S3."""

from __future__ import annotations

import itertools

from ..program import Program, Scan, Tokens
from ..task import Task

PERMS = tuple(itertools.permutations(range(3)))  # the 6 elements of S3; index 0 is the identity
GENERATORS = ("BOS", "swap", "rotate", "keep")
_MOVES = {1: (1, 0, 2), 2: (1, 2, 0), 3: (0, 1, 2)}


def _apply(state: int, x: int) -> int:
    """Compose the state's permutation with the generator read at t (BOS leaves it alone)."""
    move = _MOVES.get(x, (0, 1, 2))
    p = PERMS[state]
    return PERMS.index(tuple(p[move[i]] for i in range(3)))


def permutation_program(max_len: int) -> Program:
    tokens = Tokens(GENERATORS)
    return Program(Scan(_apply, tokens, init=0, name="state", desc="state o generator, in S3"))


def permutation_reference(seq: list[int]) -> list:
    out, arrangement = [None], [0, 1, 2]
    for x in seq[1:]:
        if x == 1:
            arrangement = [arrangement[1], arrangement[0], arrangement[2]]
        elif x == 2:
            arrangement = [arrangement[1], arrangement[2], arrangement[0]]
        out.append(PERMS.index(tuple(arrangement)))
    return out


TASKS = [
    Task("permutation", GENERATORS, 16, permutation_program, permutation_reference, alphabet=(1, 2, 3),
         doc="The arrangement of three items after the swaps and rotations so far (an element of S3). Planted algorithm: a non-abelian finite automaton (Scan); no diagonal SSM or constant-depth exact transformer can track it."),
]
