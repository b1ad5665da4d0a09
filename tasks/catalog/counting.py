"""Tasks that plant a running count or sum, read through a Map: parity, majority, count,
histogram and modular addition."""

from __future__ import annotations

import numpy as np

from ..program import Aggregate, Map, Program, Select, Tokens
from ..task import BOS, Task

BITS = ("BOS", "0", "1")
AB = ("BOS", "a", "b")
ABC = ("BOS", "a", "b", "c")
ABCD = ("BOS", "a", "b", "c", "d")
MOD = 5
DIGITS5 = ("BOS",) + tuple(str(d) for d in range(MOD))


def _biased(rng: np.random.Generator, n: int, length: int, alphabet) -> np.ndarray:
    """Inputs whose token frequencies vary per sequence, so counts cover their whole range."""
    k = len(alphabet)
    probs = rng.dirichlet(np.full(k, 0.5), size=n)
    u = rng.random((n, length, 1))
    idx = (u > np.cumsum(probs, axis=1)[:, None, :]).sum(axis=2)
    tokens = np.asarray(alphabet)[np.minimum(idx, k - 1)]
    tokens[:, 0] = BOS
    return tokens


def parity_program(max_len: int) -> Program:
    tokens = Tokens(BITS)
    is_one = Map(lambda x: x == 2, tokens, name="is_one", desc="token == '1'")
    ones = Aggregate(Select.all(), is_one, "count", name="ones", max_len=max_len)
    return Program(Map(lambda c: c % 2, ones, name="parity", desc="ones % 2"))


def parity_reference(seq: list[int]) -> list:
    return [None] + [sum(1 for x in seq[1 : t + 1] if x == 2) % 2 for t in range(1, len(seq))]


def majority_program(max_len: int) -> Program:
    tokens = Tokens(AB)
    vote = Map(lambda x: {1: 1, 2: -1}.get(x, 0), tokens, name="vote", numerical=True, desc="a: +1, b: -1")
    margin = Aggregate(Select.all(), vote, "sum", name="margin", max_len=max_len)
    return Program(Map(lambda m: (m > 0) - (m < 0), margin, name="majority", desc="sign(margin)"))


def majority_reference(seq: list[int]) -> list:
    out = [None]
    for t in range(1, len(seq)):
        a, b = seq[1 : t + 1].count(1), seq[1 : t + 1].count(2)
        out.append(1 if a > b else (-1 if b > a else 0))
    return out


def count_program(max_len: int) -> Program:
    tokens = Tokens(ABC)
    is_a = Map(lambda x: x == 1, tokens, name="is_a", desc="token == 'a'")
    return Program(Aggregate(Select.all(), is_a, "count", name="count_a", max_len=max_len))


def count_reference(seq: list[int]) -> list:
    return [None] + [seq[1 : t + 1].count(1) for t in range(1, len(seq))]


def histogram_program(max_len: int) -> Program:
    tokens = Tokens(ABCD)
    return Program(Aggregate(Select.eq(tokens, tokens), None, "count", name="histogram", max_len=max_len))


def histogram_reference(seq: list[int]) -> list:
    return [None] + [seq[1 : t + 1].count(seq[t]) for t in range(1, len(seq))]


def modular_addition_program(max_len: int) -> Program:
    tokens = Tokens(DIGITS5)
    digit = Map(lambda x: max(x - 1, 0), tokens, name="digit", numerical=True, desc="digit value (BOS: 0)")
    total = Aggregate(Select.all(), digit, "sum", name="total", max_len=max_len)
    return Program(Map(lambda s: s % MOD, total, name="sum_mod", desc=f"total % {MOD}"))


def modular_addition_reference(seq: list[int]) -> list:
    digits = [int(DIGITS5[x]) for x in seq[1:]]
    return [None] + [sum(digits[:t]) % MOD for t in range(1, len(seq))]


TASKS = [
    Task("parity", BITS, 16, parity_program, parity_reference, alphabet=(1, 2),
         doc="Parity of the 1s so far. Planted algorithm: count the 1s (mean attention / a counter), then take the count mod 2."),
    Task("majority", AB, 16, majority_program, majority_reference, alphabet=(1, 2),
         generate=lambda rng, n, L, task: _biased(rng, n, L, task.alphabet),
         doc="Which of a/b is more frequent so far (+1 a, -1 b, 0 tie). Planted algorithm: a signed running margin, then its sign."),
    Task("count", ABC, 16, count_program, count_reference, alphabet=(1, 2, 3),
         generate=lambda rng, n, L, task: _biased(rng, n, L, task.alphabet),
         doc="How many 'a' tokens so far. Planted algorithm: a running count of an indicator."),
    Task("histogram", ABCD, 16, histogram_program, histogram_reference, alphabet=(1, 2, 3, 4),
         generate=lambda rng, n, L, task: _biased(rng, n, L, task.alphabet),
         doc="How many times the current token has appeared so far, itself included. Planted algorithm: count the positions whose token equals the current one (Tracr's hist, causal)."),
    Task("modular_addition", DIGITS5, 16, modular_addition_program, modular_addition_reference, alphabet=tuple(range(1, MOD + 1)),
         doc=f"Running sum of the digits mod {MOD}. Planted algorithm: an exact running sum, then a Map to the residue (not a Z_{MOD} automaton)."),
]
