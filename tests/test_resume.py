"""Resuming a patched run from a clean prefix equals running it in full (every family)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tasks
import zoo
from zoo import patch
from zoo.model import Start

CASES = [(t, f) for t in ("parity", "induction", "sort") for f in zoo.FAMILIES]


@functools.lru_cache(maxsize=None)
def compiled(task_name, family):
    return zoo.compile(task_name, family)


@pytest.mark.parametrize("task_name,family", CASES)
def test_resumed_run_with_a_patch_equals_the_full_run(task_name, family):
    task = tasks.get(task_name)
    model = compiled(task_name, family)
    sites = model.sites

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, len(sites) - 1), st.integers(0, 2**16), st.booleans())
    def check(site_index, seed, per_example):
        site = sites[site_index]
        base, source, _, _ = task.sample_interventions(8, seed=seed)
        L = base.shape[1]
        rng = np.random.default_rng(seed)
        positions = rng.integers(0, L, 8) if per_example else np.full(8, int(rng.integers(0, L)))
        src = model.run(torch.as_tensor(source), cache=[site.name]).cache[site.name]
        fn = {site.name: patch(src, positions=torch.as_tensor(positions))}
        full = model.run(torch.as_tensor(base), interventions=fn).logits
        prefix = model.prefix(torch.as_tensor(base))
        start = Start(prefix, layer=site.layer, position=int(positions.min()))
        resumed = model.run(torch.as_tensor(base), interventions=fn, start=start).logits
        torch.testing.assert_close(resumed, full, atol=1e-5, rtol=1e-5)
        # rows: resuming a subset of the prefix's batch
        rows = torch.as_tensor([5, 1, 1])
        fn_rows = {site.name: patch(src[rows], positions=torch.as_tensor(positions)[rows])}
        sub = model.run(torch.as_tensor(base)[rows], interventions=fn_rows, start=Start(prefix, site.layer, int(positions[[5, 1]].min()), rows)).logits
        torch.testing.assert_close(sub, full[rows], atol=1e-5, rtol=1e-5)

    check()


def test_start_cannot_be_combined_with_a_cache():
    model = compiled("parity", "rnn")
    tokens = torch.as_tensor(tasks.get("parity").sample(2).tokens)
    with pytest.raises(ValueError, match="cannot also cache"):
        model.run(tokens, cache=["L0.hidden"], start=Start(model.prefix(tokens), 0, 1))
