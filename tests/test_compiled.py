"""Compiled models are exact: the property tests every (task, family) is held to.

- predictions equal the program on generated inputs of every length, max length included;
- patching a variable's ground-truth subspace with a source run's activation reproduces the
  interpreter's counterfactual on every counted position;
- patching the part of a site orthogonal to its ground-truth subspaces, or a component outside
  the circuit, leaves every output unchanged.

Pairs a family refuses must raise ``CompileError`` naming the family and the primitive; the
expected refusals are listed in ``REFUSED`` so that a new refusal fails loudly.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import tasks
import zoo
from tasks import strategies
from zoo import CompileError, patch

from .compiled_refusals import REFUSED

PAIRS = [(t, f) for t in tasks.names() for f in zoo.FAMILIES]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def compiled(task_name: str, family: str):
    return zoo.compile(task_name, family)


def model_or_refusal(task_name: str, family: str):
    if (task_name, family) in REFUSED:
        with pytest.raises(CompileError) as err:
            compiled(task_name, family)
        assert family in str(err.value) and REFUSED[(task_name, family)] in str(err.value)
        pytest.skip(f"{family} refuses {task_name}: {err.value}")
    return compiled(task_name, family)


def predict(model, tokens, **kw) -> np.ndarray:
    with torch.no_grad():
        return model.run(torch.as_tensor(tokens), **kw).logits.argmax(-1).numpy()


def assert_matches(task, tokens, predicted, expected, mask):
    wrong = mask & (predicted != expected)
    if wrong.any():
        i = int(np.argwhere(wrong)[0][0])
        raise AssertionError(f"{wrong.sum()} wrong outputs; first input {tokens[i].tolist()}: predicted {predicted[i].tolist()}, expected {np.where(mask[i], expected[i], -1).tolist()}")


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_compiled_model_equals_program(task_name, family):
    task = tasks.get(task_name)
    model = model_or_refusal(task_name, family)

    @SETTINGS
    @given(strategies.batches(task, max_size=32))
    def check(tokens):
        targets = task.targets(tokens)
        assert_matches(task, tokens, predict(model, tokens), targets, targets != tasks.IGNORE)

    check()
    full = task.sample(256, seed=1)  # at max length, with the task's balanced sampler
    assert_matches(task, full.tokens, predict(model, full.tokens), full.targets, full.targets != tasks.IGNORE)


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_ground_truth_patching_reproduces_counterfactuals(task_name, family):
    task = tasks.get(task_name)
    model = model_or_refusal(task_name, family)
    gt = model.ground_truth
    assert set(gt.variables) == set(task.program.names), "every program variable has a location"

    @SETTINGS
    @given(strategies.interventions(task, max_size=32))
    def check(case):
        base, source, variable, position = case
        loc = gt.variables[variable]
        src = model.run(torch.as_tensor(source), cache=[loc.site]).cache[loc.site]
        fn = patch(src, positions=torch.as_tensor(position + loc.lag), basis=loc.tensor())
        got = predict(model, base, interventions={loc.site: fn})
        cf = task.counterfactual(base, source, variable, position)
        assert_matches(task, base, got, cf.outputs, cf.mask)

    check()


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_patching_outside_ground_truth_changes_nothing(task_name, family):
    task = tasks.get(task_name)
    model = model_or_refusal(task_name, family)
    gt = model.ground_truth
    sites = {s.name: s for s in model.sites}
    outside = [s for s in sites if s not in gt.circuit and s not in gt.site_variables]

    @SETTINGS
    @given(strategies.pairs(task, max_size=32))
    def check(pair):
        base, source = pair
        expected = task.targets(base)
        mask = expected != tasks.IGNORE
        names = list(gt.site_variables) + outside
        cache = model.run(torch.as_tensor(source), cache=names).cache
        for site, variables in gt.site_variables.items():
            span = gt.subspace_at(site)
            complement = _complement(span, sites[site].width)
            if complement is None:
                continue
            got = predict(model, base, interventions={site: patch(cache[site], basis=complement)})
            assert_matches(task, base, got, expected, mask)
        for site in outside:
            got = predict(model, base, interventions={site: patch(cache[site])})
            assert_matches(task, base, got, expected, mask)

    check()


def _complement(span: np.ndarray, width: int):
    if span.size == 0:
        return torch.eye(width)
    _, s, vt = np.linalg.svd(span, full_matrices=True)
    rest = vt[span.shape[0]:]
    return torch.as_tensor(rest, dtype=torch.float32) if rest.shape[0] else None
