"""How long an input each family's construction of a primitive stays exact: the bounds ``zoo tasks``
prints beside the primitive x family table.

Every bound is the one the family's compiler enforces (it refuses a longer ``max_len`` with a
``CompileError``), written from the compiler's own constants; "any L" means no construction of
that family refuses a length, though some grow with it (named in the text). ``m`` is the
largest ``|value|`` a count or sum adds up (1 for a count). A compiled model holds up to the
``max_len`` it was compiled for: ``zoo compile --max-len`` rebuilds it longer.

- transformer: a count or a sum is an exact-mean head whose float32 error is at most
  ``5e-7 L m``, refused past ``MEAN_HEAD_ERROR_LIMIT`` (``L m <= 40,000``); a Scan is a parallel
  prefix of ``ceil(log2 L)`` layers (:mod:`tasks.rewrite`); every other selection is exact at
  any length (score gaps of 120 against rounding below 1e-3 while ``L`` stays below ~10^5).
- rnn: every value a unit holds stays below ``EXACT_LIMIT = 2^22`` (``(2 m + 1) L < 2^22``
  for a count or a sum); a Scan steps through its states (its rounding, after a
  reparametrisation, grows linearly with L).
- ssm: a count or a sum accumulates integers up to ``EXACT_LIMIT = 2^20`` (``L m <= 2^20``),
  a numerical output is decoded exactly up to ``|value| <= 1024``; a Scan is a parallel prefix
  of ``ceil(log2 L)`` blocks whose convolution has ``2^(K-1) + 1`` taps for the longest offset.
"""

from __future__ import annotations

from .compilers import rnn_units, ssm, transformer

_MEAN_HEAD = int(round(transformer.MEAN_HEAD_ERROR_LIMIT / 5e-7))  # the error bound's coefficient, see transformer._mean_head_check
_RNN_LIMIT = rnn_units.EXACT_LIMIT.bit_length() - 1
_SSM_LIMIT = ssm.EXACT_LIMIT.bit_length() - 1

_SUMS = {
    "transformer": f"L*m <= {_MEAN_HEAD:,}",
    "rnn": f"(2m+1)*L < 2^{_RNN_LIMIT}",
    "ssm": f"L*m <= 2^{_SSM_LIMIT}",
}
_SCAN = {
    "transformer": "any L: ceil(log2 L) layers",
    "rnn": "any L: step by step",
    "ssm": "any L: ceil(log2 L) blocks, 2^(K-1)+1 conv taps",
}
_OTHER = {"transformer": "any L", "rnn": f"L < 2^{_RNN_LIMIT}", "ssm": "any L"}


def length_bound(family: str, primitive: str) -> str:
    """The length bound of ``family``'s construction of ``primitive`` (as :func:`zoo.support.primitive_of` names it)."""
    if primitive == "Scan":
        return _SCAN[family]
    if primitive.startswith("Aggregate[") and primitive.endswith(("/count]", "/sum]")) and not primitive.startswith("Aggregate[offset"):
        return _SUMS[family]
    if primitive.startswith("Aggregate["):
        return _OTHER[family]
    return "any L"  # Map, Sum: per position, no length of their own (their inputs' ranges may grow with L)
