"""The length bounds ``zoo tasks`` prints (zoo/bounds.py) are the ones the compilers enforce:
a count just past its stated bound is refused, naming the max_len."""

from __future__ import annotations

import pytest

import zoo
from zoo import CompileError
from zoo.bounds import length_bound


def test_the_transformer_refuses_a_count_past_its_stated_bound():
    assert length_bound("transformer", "Aggregate[all/count]") == "L*m <= 40,000"
    with pytest.raises(CompileError, match="max_len 40001"):
        zoo.compile("parity", "transformer", max_len=40_001)


def test_the_rnn_refuses_a_count_past_its_stated_bound():
    assert length_bound("rnn", "Aggregate[all/count]") == "(2m+1)*L < 2^22"
    first_refused = (2**22 - 2) // 3 + 1  # (2*1 + 1) * L + 2 >= 2^22 (rnn.Builder.aggregate)
    with pytest.raises(CompileError, match="past float32's exact integers"):
        zoo.compile("count", "rnn", max_len=first_refused)


def test_every_primitive_has_a_bound_in_every_family():
    for family in zoo.FAMILIES:
        for primitive in ("Scan", "Map", "Sum", "Aggregate[all/count]", "Aggregate[lt/count]", "Aggregate[offset/last]", "Aggregate[eq/first]"):
            assert length_bound(family, primitive)
    assert "log2" in length_bound("transformer", "Scan") and "log2" in length_bound("ssm", "Scan")
