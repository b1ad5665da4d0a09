"""Tasks that plant an order statistic or a position arithmetic: running max, Dyck-1 balance,
reverse and sort (the last two in seq2seq mode)."""

from __future__ import annotations

import numpy as np

from ..program import Aggregate, Indices, Map, Program, Select, Sum, Tokens
from ..task import BOS, SEQ2SEQ, Task

DIGITS6 = ("BOS",) + tuple(str(d) for d in range(6))
PARENS = ("BOS", "(", ")")
INVALID, BALANCED, OPEN = 0, 1, 2
REVERSE_VOCAB = ("BOS", "SEP", "a", "b", "c", "d")
SORT_VOCAB = ("BOS", "SEP", "0", "1", "2", "3", "4")
SEP = 1


def running_max_program(max_len: int) -> Program:
    tokens = Tokens(DIGITS6)
    digit = Map(lambda x: max(x - 1, 0), tokens, name="digit", desc="digit value (BOS: 0)")
    return Program(Aggregate(Select.all(), digit, "max", name="running_max", max_len=max_len))


def running_max_reference(seq: list[int]) -> list:
    return [None] + [max(int(DIGITS6[x]) for x in seq[1 : t + 1]) for t in range(1, len(seq))]


def _capped_digits(rng: np.random.Generator, n: int, length: int, task: Task) -> np.ndarray:
    """Digits below a per-sequence cap, so every running maximum is common."""
    cap = rng.integers(1, len(task.alphabet) + 1, size=(n, 1))
    tokens = 1 + (rng.random((n, length)) * cap).astype(np.int64)
    tokens[:, 0] = BOS
    return tokens


def dyck1_program(max_len: int) -> Program:
    tokens = Tokens(PARENS)
    step = Map(lambda x: {1: 1, 2: -1}.get(x, 0), tokens, name="step", numerical=True, desc="'(': +1, ')': -1")
    depth = Aggregate(Select.all(), step, "sum", name="depth", max_len=max_len)
    lowest = Aggregate(Select.all(), depth, "min", name="lowest", max_len=max_len)

    def status(d, low):
        return INVALID if low < 0 else (BALANCED if d == 0 else OPEN)

    return Program(Map(status, depth, lowest, name="status", desc="invalid if lowest < 0, balanced if depth == 0, else open"))


def dyck1_reference(seq: list[int]) -> list:
    out, depth, ok = [None], 0, True
    for x in seq[1:]:
        depth += 1 if x == 1 else -1
        ok = ok and depth >= 0
        out.append(BALANCED if ok and depth == 0 else (OPEN if ok else INVALID))
    return out


def _dyck_walks(rng: np.random.Generator, n: int, length: int, task: Task) -> np.ndarray:
    """Half valid prefixes (a walk that never goes below 0), half uniform strings."""
    tokens = 1 + (rng.random((n, length)) < 0.5).astype(np.int64)
    depth = np.zeros(n, dtype=np.int64)
    valid = rng.random(n) < 0.5
    for t in range(1, length):
        forced_open = valid & (depth == 0)
        tokens[forced_open, t] = 1
        depth += np.where(tokens[:, t] == 1, 1, -1)
    tokens[:, 0] = BOS
    return tokens


def _sep_index(tokens: Tokens, indices: Indices) -> Aggregate:
    at_sep = Map(lambda x, i: i if x == SEP else 0, tokens, indices, name="at_sep", desc="position if SEP else 0")
    return Aggregate(Select.all(), at_sep, "max", name="sep_index")


def reverse_program(max_len: int) -> Program:
    tokens, indices = Tokens(REVERSE_VOCAB), Indices(max_len)
    sep_index = _sep_index(tokens, indices)

    def mirror(s, t):
        j = 2 * s - 1 - t
        return j if s > 0 and 1 <= j < s else -1

    source = Map(mirror, sep_index, indices, name="source_index", desc="2*sep_index - 1 - t inside the input, else -1")
    return Program(Aggregate(Select.eq(indices, source), tokens, "last", name="reversed", default=BOS))


def reverse_reference(seq: list[int]) -> list:
    s = seq.index(SEP)
    xs = seq[1:s][::-1]
    return [xs[t - s] if s <= t < s + len(xs) else None for t in range(len(seq))]


def sort_program(max_len: int) -> Program:
    """Counting sort: the k-th output is the number of values v whose count of inputs <= v is at most k."""
    tokens, indices = Tokens(SORT_VOCAB), Indices(max_len)
    is_sep = Map(lambda x: x == SEP, tokens, name="is_sep", desc="token == SEP")
    after_sep = Aggregate(Select.all(), is_sep, "max", name="after_sep")
    sep_index = _sep_index(tokens, indices)
    rank = Map(lambda s, t: max(t - s, 0) if s > 0 else 0, sep_index, indices, name="rank", desc="t - sep_index (0 before SEP)")
    below = []
    for v in range(len(SORT_VOCAB) - 3):  # values 0..V-2; the largest value needs no count
        le = Map(lambda x, a, v=v: int(a == 0 and x >= 2 and x - 2 <= v), tokens, after_sep, name=f"le{v}", desc=f"input token <= {v}")
        count = Aggregate(Select.all(), le, "count", name=f"count_le{v}", max_len=max_len)
        below.append(Map(lambda c, k: int(c <= k), count, rank, name=f"below{v}", numerical=True, desc=f"count_le{v} <= rank"))
    return Program(Sum(*below, name="sorted_value"))


def sort_reference(seq: list[int]) -> list:
    s = seq.index(SEP)
    xs = sorted(int(SORT_VOCAB[x]) for x in seq[1:s])
    return [xs[t - s] if s <= t < s + len(xs) else None for t in range(len(seq))]


TASKS = [
    Task("running_max", DIGITS6, 16, running_max_program, running_max_reference, alphabet=tuple(range(1, 7)),
         generate=_capped_digits,
         doc="The largest digit so far. Planted algorithm: a max-reduction over all earlier positions."),
    Task("dyck1", PARENS, 16, dyck1_program, dyck1_reference, alphabet=(1, 2),
         generate=_dyck_walks,
         doc="Balanced parentheses: 0 invalid (closed too many), 1 balanced, 2 open. Planted algorithm: running depth (sum of +-1), its running minimum, then a Map of the two."),
    Task("reverse", REVERSE_VOCAB, 17, reverse_program, reverse_reference, alphabet=(2, 3, 4, 5), mode=SEQ2SEQ,
         doc="Input, SEP, then the input reversed. Planted algorithm: find SEP's position s, then at t read the token at 2s-1-t."),
    Task("sort", SORT_VOCAB, 17, sort_program, sort_reference, alphabet=(2, 3, 4, 5, 6), mode=SEQ2SEQ,
         doc="Input, SEP, then the input sorted. Planted algorithm: counting sort (cumulative counts of inputs <= v, compared with the output rank), not Tracr's rank sort."),
]
