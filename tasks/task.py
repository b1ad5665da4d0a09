"""A task: vocabulary, length limit, program, sampler, readout positions and a reference.

Inputs are int64 arrays ``[n, L]`` of token ids. Every input starts with ``BOS`` (id 0), the
attention sink of compiled transformers and the start symbol of recurrent models. Two I/O modes:

- ``transduction``: an output at every position after ``BOS``;
- ``seq2seq``: ``BOS x_1..x_m SEP y_1..y_{m-1}``, where the output at ``SEP`` and after it is
  ``y_1..y_m`` (teacher forcing: the input after ``SEP`` is the previous output).

Targets are *class indices* into ``task.classes`` (the output variable's sorted value set),
with ``IGNORE`` (-100, the default ``ignore_index`` of torch's cross-entropy) at positions that
are not read out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Callable, NamedTuple, Sequence, Union

import numpy as np

from . import interpreter
from .program import Program, Variable

IGNORE = -100
BOS = 0
TRANSDUCTION = "transduction"
SEQ2SEQ = "seq2seq"


class Sample(NamedTuple):
    tokens: np.ndarray  # [n, L] token ids
    targets: np.ndarray  # [n, L] class indices, IGNORE where not read out


class Counterfactual(NamedTuple):
    outputs: np.ndarray  # [n, L] class indices of the output under the intervention
    mask: np.ndarray  # [n, L] positions that count: readout positions allowed by the protocol
    values: dict  # every variable's values under the intervention


@dataclass(frozen=True)
class Task:
    """An algorithmic task. ``build(max_len)`` returns its program; see the module docstring."""

    name: str
    vocab: tuple[str, ...]
    max_len: int
    build: Callable[[int], Program]
    reference: Callable[[list[int]], list]  # plain Python: outputs per position (None = not read out)
    alphabet: tuple[int, ...]  # token ids that may appear in the body of an input
    mode: str = TRANSDUCTION
    generate: Callable[[np.random.Generator, int, int, "Task"], np.ndarray] | None = None  # balanced sampler
    doc: str = ""
    decoys: bool = False  # the program carries its decoy clone (tasks.decoys); see with_decoys

    def __post_init__(self):
        if self.vocab[BOS] != "BOS":
            raise ValueError(f"task {self.name!r}: token 0 must be 'BOS', got {self.vocab[0]!r}")
        if self.mode not in (TRANSDUCTION, SEQ2SEQ):
            raise ValueError(f"task {self.name!r}: mode {self.mode!r} must be {TRANSDUCTION!r} or {SEQ2SEQ!r}")
        if self.mode == SEQ2SEQ and "SEP" not in self.vocab:
            raise ValueError(f"task {self.name!r}: seq2seq tasks need a 'SEP' token")
        if self.max_len < self.min_len:
            raise ValueError(f"task {self.name!r}: max_len {self.max_len} is below the minimum {self.min_len}")

    # -- structure -------------------------------------------------------------------------
    @cached_property
    def program(self) -> Program:
        program = self.build(self.max_len)
        if self.decoys:
            from .decoys import relabelling, with_decoys

            program = with_decoys(program, relabelling(self.vocab, self.alphabet), self.max_len)
        return program

    @property
    def output(self) -> Variable:
        return self.program.output

    @property
    def classes(self) -> tuple[int, ...]:
        """Output values, in class-index order."""
        return self.output.value_set.values

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def sep(self) -> int | None:
        return self.vocab.index("SEP") if "SEP" in self.vocab else None

    @property
    def min_len(self) -> int:
        """The shortest valid input: BOS and one token (plus SEP in seq2seq mode)."""
        return 3 if self.mode == SEQ2SEQ else 2

    def with_max_len(self, max_len: int) -> "Task":
        """The same task for inputs of at most ``max_len`` positions."""
        return replace(self, max_len=int(max_len))

    def with_decoys(self, decoys: bool = True) -> "Task":
        """The same task whose program also computes its decoy clone (:mod:`tasks.decoys`): the
        same inputs and outputs, more variables."""
        return self if self.decoys == bool(decoys) else replace(self, decoys=bool(decoys))

    # -- input checking ----------------------------------------------------------------------
    def validate(self, tokens) -> np.ndarray:
        """``tokens`` as an int64 array ``[n, L]``, or a ValueError naming the bad value and the limit."""
        arr = np.asarray(tokens)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"tokens must have shape [n, L], got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"tokens must be integer token ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.shape[1] > self.max_len:
            raise ValueError(f"sequence length {arr.shape[1]} exceeds task {self.name!r}'s max_len {self.max_len}; shorten the input or use task.with_max_len({arr.shape[1]})")
        if arr.shape[1] < 1:
            raise ValueError("empty sequence: every input starts with BOS (token id 0)")
        bad = (arr < 0) | (arr >= len(self.vocab))
        if bad.any():
            value = int(arr[bad][0])
            raise ValueError(f"token id {value} is outside task {self.name!r}'s vocabulary of {len(self.vocab)} tokens (valid ids 0..{len(self.vocab) - 1}: {', '.join(self.vocab)})")
        if (arr[:, 0] != BOS).any():
            value = int(arr[arr[:, 0] != BOS, 0][0])
            raise ValueError(f"inputs must start with BOS (id 0), found id {value} at position 0")
        return arr

    def encode(self, symbols: Sequence[str]) -> np.ndarray:
        """Token ids ``[1, L]`` for a list of token names, BOS prepended when missing."""
        symbols = list(symbols)
        if not symbols or symbols[0] != "BOS":
            symbols = ["BOS"] + symbols
        unknown = [s for s in symbols if s not in self.vocab]
        if unknown:
            raise ValueError(f"token {unknown[0]!r} is not in task {self.name!r}'s vocabulary: {', '.join(self.vocab)}")
        return self.validate([[self.vocab.index(s) for s in symbols]])

    # -- semantics ---------------------------------------------------------------------------
    def possible_readout(self, length: int | None = None) -> np.ndarray:
        """Boolean ``[length]``: the positions some valid input reads out (seq2seq: over every
        SEP position the sampler draws)."""
        L = self.max_len if length is None else int(length)
        t = np.arange(L)
        if self.mode == TRANSDUCTION:
            return t >= 1
        return (t >= 2) & (t <= 2 * self.sep_position(L) - 2)

    def readout_mask(self, tokens: np.ndarray) -> np.ndarray:
        """Boolean ``[n, L]``: the positions whose output is part of the task."""
        tokens = np.asarray(tokens)
        n, L = tokens.shape
        t = np.arange(L)[None, :]
        if self.mode == TRANSDUCTION:
            return np.broadcast_to(t >= 1, (n, L)).copy()
        is_sep = tokens == self.sep
        has_sep = is_sep.any(axis=1, keepdims=True)
        s = np.argmax(is_sep, axis=1)[:, None]
        return has_sep & (t >= s) & (t <= 2 * s - 2)

    def run(self, tokens) -> dict[str, np.ndarray]:
        """Every variable's values on ``tokens``."""
        return interpreter.run(self.program, self.validate(tokens))

    def to_classes(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        classes = self.output.value_set.index(values)
        return np.where(mask, classes, IGNORE)

    def targets(self, tokens) -> np.ndarray:
        """Class indices of the program's output, IGNORE where not read out."""
        tokens = self.validate(tokens)
        values = interpreter.run(self.program, tokens)[self.output.name]
        return self.to_classes(values, self.readout_mask(tokens))

    def counterfactual(self, base, source, variable: Union[str, Variable, Sequence], position) -> Counterfactual:
        """The outputs of ``base`` when ``variable`` at ``position`` takes its value from ``source``.

        ``variable``/``position`` may be single (position an int or an array ``[n]``) or
        parallel sequences for several interventions at once. ``mask`` holds the readout
        positions that count under the protocol of :mod:`tasks.interpreter`.
        """
        base, source = self.validate(base), self.validate(source)
        if isinstance(variable, (str, Variable)):
            interventions = [(variable, position)]
        else:
            variable, position = list(variable), list(position)
            if len(variable) != len(position):
                raise ValueError(f"{len(variable)} variables but {len(position)} positions")
            interventions = list(zip(variable, position))
        values, counted = interpreter.counterfactual(self.program, base, source, interventions)
        mask = counted & self.readout_mask(base)
        return Counterfactual(self.to_classes(values[self.output.name], mask), mask, values)

    def replaced(self, base, source, variable: Union[str, Variable], where) -> Counterfactual:
        """The outputs of ``base`` when the per-position ``variable`` takes its value from
        ``source`` at every position where ``where`` ``[n, L]`` is set (see
        :func:`tasks.interpreter.replaced`)."""
        base, source = self.validate(base), self.validate(source)
        values, counted = interpreter.replaced(self.program, base, source, variable, where)
        mask = counted & self.readout_mask(base)
        return Counterfactual(self.to_classes(values[self.output.name], mask), mask, values)

    # -- sampling ----------------------------------------------------------------------------
    @staticmethod
    def sep_position(length: int) -> int:
        """The latest SEP position of a seq2seq input of ``length`` positions (after m = length // 2
        tokens, the longest input whose whole output fits); samplers draw SEP anywhere in
        ``2..sep_position(length)``, the positions after the output holding filler tokens."""
        return length // 2 + 1

    def random_inputs(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        """Uniform inputs in the task's format (no balancing); in seq2seq mode SEP at a uniform
        position in ``2..sep_position(length)`` per input, so inputs of every length occur."""
        tokens = rng.choice(np.asarray(self.alphabet), size=(n, length))
        tokens[:, 0] = BOS
        if self.mode == SEQ2SEQ:
            sep = rng.integers(2, self.sep_position(length) + 1, size=n)
            tokens[np.arange(n), sep] = self.sep
        return tokens

    def sample(self, n: int, seed: int = 0, length: int | None = None) -> Sample:
        """``n`` inputs of ``length`` positions (default ``max_len``) and their targets; seeded."""
        length = self.max_len if length is None else int(length)
        if not self.min_len <= length <= self.max_len:
            raise ValueError(f"length {length} must be within {self.min_len}..{self.max_len} for task {self.name!r}")
        rng = np.random.default_rng(seed)
        tokens = self.generate(rng, n, length, self) if self.generate else self.random_inputs(rng, n, length)
        tokens = self.validate(tokens)
        return Sample(tokens, self.targets(tokens))

    def sample_interventions(self, n: int, seed: int = 0, length: int | None = None, variable: str | None = None):
        """Seeded (base, source, variable, position) batches: one variable, a position per example.

        Sources are drawn independently; the position is uniform over positions where the
        variable's value differs between base and source when there is such a position.
        """
        length = self.max_len if length is None else int(length)
        rng = np.random.default_rng(seed)
        base = self.sample(n, int(rng.integers(2**31)), length).tokens
        source = self.sample(n, int(rng.integers(2**31)), length).tokens
        name = variable or str(rng.choice(self.program.names))
        vb, vs = self.run(base)[name], self.run(source)[name]
        differs = (vb != vs) & (np.arange(length)[None, :] >= 1)
        weights = np.where(differs.any(axis=1, keepdims=True), differs, np.arange(length)[None, :] >= 1).astype(float)
        u = rng.random((n, 1)) * weights.sum(axis=1, keepdims=True)
        position = np.minimum((np.cumsum(weights, axis=1) < u).sum(axis=1), length - 1)
        return base, source, name, position
