"""Tasks that plant a finite-state automaton with a Scan: permutation composition in S3, and the
flip-flop (a one-bit memory)."""

from __future__ import annotations

import itertools

import numpy as np

from ..program import Program, Scan, Tokens
from ..task import BOS, Task

PERMS = tuple(itertools.permutations(range(3)))  # the 6 elements of S3; index 0 is the identity
GENERATORS = ("BOS", "swap", "rotate", "keep")
_MOVES = {1: (1, 0, 2), 2: (1, 2, 0), 3: (0, 1, 2)}

INSTRUCTIONS = ("BOS", "write0", "write1", "ignore", "read")
WRITE0, WRITE1, IGNORE, READ = 1, 2, 3, 4
FIRST_WRITE = 0.8  # share of sampled flip-flop sequences whose first instruction is a write


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


def _flip_flop_step(bit: int, x: int) -> int:
    """A write sets the bit; ignore, read and BOS keep it."""
    return 0 if x == WRITE0 else (1 if x == WRITE1 else bit)


def flip_flop_program(max_len: int) -> Program:
    tokens = Tokens(INSTRUCTIONS)
    return Program(Scan(_flip_flop_step, tokens, init=0, name="bit", desc="write0: 0, write1: 1, else keep"))


def flip_flop_reference(seq: list[int]) -> list:
    out, bit = [None], 0
    for x in seq[1:]:
        if x in (WRITE0, WRITE1):
            bit = x - WRITE0
        out.append(bit)
    return out


def _sparse_writes(rng: np.random.Generator, n: int, length: int, task: Task) -> np.ndarray:
    """Each sequence writes at its own rate, uniform in 0.05..0.5 per position (a written bit
    uniform), and otherwise ignores or reads: bits are held over long and short stretches alike,
    and both bits are about equally common: position 1 is a write in ``FIRST_WRITE`` of the
    sequences (the others start in the reset state 0 and hold it until their first write)."""
    rate = rng.uniform(0.05, 0.5, size=(n, 1))
    u = rng.random((n, length))
    write = np.where(rng.random((n, length)) < 0.5, WRITE0, WRITE1)
    keep = np.where(rng.random((n, length)) < 0.5, IGNORE, READ)
    tokens = np.where(u < rate, write, keep)
    if length > 1:  # most sequences write first, so the reset state does not tilt the bits to 0
        tokens[:, 1] = np.where(rng.random(n) < FIRST_WRITE, write[:, 1], tokens[:, 1])
    tokens[:, 0] = BOS
    return tokens


TASKS = [
    Task("permutation", GENERATORS, 16, permutation_program, permutation_reference, alphabet=(1, 2, 3),
         doc="The arrangement of three items after the swaps and rotations so far (an element of S3). Planted algorithm: a non-abelian finite automaton (Scan); no diagonal SSM or constant-depth transformer tracks it at every length: the RNN steps through the states, the transformer and the SSM compose the transitions as a parallel prefix over S3 (ceil(log2 max_len) layers)."),
    Task("flip_flop", INSTRUCTIONS, 16, flip_flop_program, flip_flop_reference, alphabet=(WRITE0, WRITE1, IGNORE, READ),
         generate=_sparse_writes,
         doc="The flip-flop language: write0 and write1 store a bit, ignore and read keep it; the output at every position is what a read there returns, the last written bit (0 before any write: the flip-flop's reset state). Planted algorithm: a two-state automaton (Scan) whose transition monoid is {keep, set 0, set 1}; the RNN steps through it, the transformer and the SSM compose the instructions as a parallel prefix."),
]
