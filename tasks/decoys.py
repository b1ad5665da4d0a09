"""Decoys: a shadow copy of a program, computed beside it from the same input and read by nothing
the output uses.

An evaluator needs negatives that are *active*: components that compute real things, that vary
with the input at the magnitudes the algorithm's own variables have, and that the output does
not depend on. A method that scores a component by how much it varies, how large it is or which
layer it sits in cannot tell them from the planted circuit; a causal method can. The decoy of a
program is its clone on a relabelled input:

- every variable ``v`` (but ``tokens`` and ``indices``, which are shared) gets a clone
  ``v_decoy`` built by the same primitive from the clones of its inputs, so each decoy has the
  value set, primitive kind and dependency depth of its original (a compiler puts it in the same
  layer, at the same width);
- a ``Map`` or ``Scan`` that reads the tokens reads them *relabelled*: the task's alphabet
  rotated by one (two letters swapped), ``BOS`` and ``SEP`` fixed. The relabelling is composed into
  the reader's function, so no extra variable (and no extra layer) is needed; an ``Aggregate``
  that reads the tokens directly (as a key, query or value) reads them as they are, so some
  decoys equal their originals on every input (``shift``'s, ``histogram``'s): they still sit in
  components of their own that no output reads.

The decoy output is an extra sink of the program (:class:`tasks.program.Program`'s ``decoys``);
interventions and counterfactuals cover it like any variable, so an evaluator can read it (with
the decoder a compiler stores beside it) to check that a location claimed for one variable does
not also move the decoys.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .program import Aggregate, Indices, Map, Program, Scan, Select, Sum, Tokens, Variable

SUFFIX = "_decoy"


def relabelling(vocab: Sequence[str], alphabet: Sequence[int]) -> dict[int, int]:
    """The token map of the decoys: the alphabet rotated by one, every other id fixed."""
    alphabet = list(alphabet)
    out = {i: i for i in range(len(vocab))}
    for a, b in zip(alphabet, alphabet[1:] + alphabet[:1]):
        out[a] = b
    return out


def decoy_name(name: str) -> str:
    return name + SUFFIX


def with_decoys(program: Program, relabel: dict[int, int], max_len: int) -> Program:
    """``program`` with the clone of its output as a decoy (see the module doc)."""
    if program.decoys:
        raise ValueError("the program already has decoys")
    tokens = program.tokens
    clones: dict[int, Variable] = {}

    def of(v: Variable) -> Variable:
        return v if isinstance(v, (Tokens, Indices)) else clones[id(v)]

    for v in program.variables:
        if isinstance(v, (Tokens, Indices)):
            continue
        clones[id(v)] = _clone(v, of, tokens, relabel, max_len)
    out = program.output
    if isinstance(out, (Tokens, Indices)):  # nothing computed to clone: the decoy is the relabelled input
        f = (lambda x: relabel[int(x)]) if out is tokens else (lambda x: x)
        return Program(out, decoys=(Map(f, out, name=decoy_name(out.name), desc="relabelled input, decoy"),))
    return Program(out, decoys=(clones[id(out)],))


def _relabelled(f: Callable, inputs: Sequence[Variable], tokens: Tokens, relabel: dict[int, int]) -> Callable:
    at = [i for i, x in enumerate(inputs) if x is tokens]
    if not at:
        return f

    def g(*args):
        args = list(args)
        for i in at:
            args[i] = relabel[int(args[i])]
        return f(*args)

    return g


def _clone(v: Variable, of, tokens: Tokens, relabel: dict[int, int], max_len: int) -> Variable:
    name = decoy_name(v.name)
    if isinstance(v, Map):
        f = _relabelled(v.f, v.inputs, tokens, relabel)
        return Map(f, *(of(x) for x in v.inputs), name=name, numerical=v.value_set.is_numerical, desc=f"{v.desc}, decoy")
    if isinstance(v, Sum):
        return Sum(*(of(x) for x in v.inputs), weights=v.weights, bias=v.bias, name=name)
    if isinstance(v, Aggregate):
        sel = v.select
        select = Select(sel.kind, of(sel.key) if sel.key is not None else None, of(sel.query) if sel.query is not None else None, sel.offset)
        value = of(v.value) if v.value is not None else None
        default = v.default if v.reduce not in ("count", "sum") and select.may_be_empty else None
        return Aggregate(select, value, v.reduce, name=name, default=default, max_len=max_len)
    if isinstance(v, Scan):
        x = v.inputs[0]
        f = v.f
        if x is tokens:
            f = lambda s, a, f=v.f: f(s, relabel[int(a)])  # noqa: E731
        return Scan(f, of(x), init=v.init, name=name, desc=f"{v.desc}, decoy")
    raise TypeError(f"cannot clone a {type(v).__name__} ({v.name!r})")
