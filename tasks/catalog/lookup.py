"""Tasks that plant a lookup of another position: shift, induction, first occurrence."""

from __future__ import annotations

import numpy as np

from ..program import Aggregate, Indices, Program, Select, Tokens
from ..task import BOS, Task

ABCD = ("BOS", "a", "b", "c", "d")
LETTERS = ("BOS", "a", "b", "c", "d", "e", "f")
NONE = -1


def _small_alphabets(rng: np.random.Generator, n: int, length: int, task: Task) -> np.ndarray:
    """Each sequence draws from a random subset of 2..|alphabet| letters, so tokens repeat often."""
    alphabet = np.asarray(task.alphabet)
    k = rng.integers(2, len(alphabet) + 1, size=(n, 1))
    perm = np.argsort(rng.random((n, len(alphabet))), axis=1)
    choice = (rng.random((n, length)) * k).astype(np.int64)
    tokens = alphabet[np.take_along_axis(perm, choice, axis=1)]
    tokens[:, 0] = BOS
    return tokens


def shift_program(max_len: int) -> Program:
    tokens = Tokens(ABCD)
    return Program(Aggregate(Select.offset_by(1), tokens, "last", name="previous", default=BOS, max_len=max_len))


def shift_reference(seq: list[int]) -> list:
    return [None] + seq[:-1]


def induction_program(max_len: int) -> Program:
    tokens = Tokens(LETTERS)
    previous = Aggregate(Select.offset_by(1), tokens, "last", name="previous", default=BOS, max_len=max_len)
    return Program(Aggregate(Select.eq(previous, tokens), tokens, "last", name="induction", default=NONE, max_len=max_len))


def induction_reference(seq: list[int]) -> list:
    out = [None]
    for t in range(1, len(seq)):
        earlier = [i for i in range(1, t) if seq[i] == seq[t]]
        out.append(seq[earlier[-1] + 1] if earlier else NONE)
    return out


def first_occurrence_program(max_len: int) -> Program:
    tokens, indices = Tokens(LETTERS), Indices(max_len)
    return Program(Aggregate(Select.eq(tokens, tokens), indices, "first", name="first_index"))


def first_occurrence_reference(seq: list[int]) -> list:
    return [None] + [seq.index(seq[t], 1) for t in range(1, len(seq))]


TASKS = [
    Task("shift", ABCD, 16, shift_program, shift_reference, alphabet=(1, 2, 3, 4),
         doc="Copy the previous token. Planted algorithm: a fixed-offset lookup (previous-token head, delay line, convolution tap)."),
    Task("induction", LETTERS, 16, induction_program, induction_reference, alphabet=tuple(range(1, 7)),
         generate=_small_alphabets,
         doc="The token that followed the previous occurrence of the current token (-1 if none). Planted algorithm: a previous-token variable, then the most recent position whose previous token equals the current token."),
    Task("first_occurrence", LETTERS, 16, first_occurrence_program, first_occurrence_reference, alphabet=tuple(range(1, 7)),
         generate=_small_alphabets,
         doc="The position where the current token first appeared. Planted algorithm: the earliest position whose token equals the current one, reduced 'first' over the positions."),
]
