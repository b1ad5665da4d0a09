"""Compiled models are exact: the property tests every (task, family) is held to, compiled and
reparametrized.

- predictions equal the program on generated inputs of every length, max length included;
- patching a variable's ground-truth subspace with a source run's activation reproduces the
  interpreter's counterfactual on every counted position;
- patching the part of a site orthogonal to its ground-truth subspaces, or a component outside
  the circuit, leaves every output unchanged.

Pairs a family refuses must raise ``CompileError`` naming the family and the primitive; the
expected refusals are listed in ``REFUSED`` so that a new refusal fails loudly. The ``check_*``
functions are reused by the family tests on synthetic programs.
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
from zoo import CompileError, patch, verify

from .compiled_refusals import REFUSED

KINDS = ("compiled", "reparametrized")
PAIRS = [(t, f) for t in tasks.names() for f in zoo.FAMILIES]
CASES = [(t, f, k) for t, f in PAIRS for k in KINDS]
EXAMPLES = {"compiled": 40, "reparametrized": 12}


def hypothesis_settings(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def compiled(task_name: str, family: str, kind: str = "compiled"):
    model = zoo.compile(task_name, family)
    return zoo.reparametrize(model, seed=11) if kind == "reparametrized" else model


def model_or_refusal(task_name: str, family: str, kind: str = "compiled"):
    if (task_name, family) in REFUSED:
        with pytest.raises(CompileError) as err:
            compiled(task_name, family, kind)
        assert family in str(err.value) and REFUSED[(task_name, family)] in str(err.value)
        pytest.skip(f"{family} refuses {task_name}: {err.value}")
    return compiled(task_name, family, kind)


def predict(model, tokens, **kw) -> np.ndarray:
    with torch.no_grad():
        return model.run(torch.as_tensor(tokens), **kw).logits.argmax(-1).numpy()


def assert_matches(task, tokens, predicted, expected, mask):
    wrong = mask & (predicted != expected)
    if wrong.any():
        i = int(np.argwhere(wrong)[0][0])
        raise AssertionError(f"{wrong.sum()} wrong outputs; first input {tokens[i].tolist()}: predicted {predicted[i].tolist()}, expected {np.where(mask[i], expected[i], -1).tolist()}")


def _complement(span: np.ndarray, width: int):
    if span.size == 0:
        return torch.eye(width)
    _, s, vt = np.linalg.svd(span, full_matrices=True)
    rest = vt[span.shape[0]:]
    return torch.as_tensor(rest, dtype=torch.float32) if rest.shape[0] else None


def check_equals_program(model, task, n: int, full_sample: int = 256):
    @hypothesis_settings(n)
    @given(strategies.batches(task, max_size=32))
    def check(tokens):
        assert_equals_program(model, task, tokens)

    check()
    full = task.sample(full_sample, seed=1)  # at max length, with the task's balanced sampler
    assert_equals_program(model, task, full.tokens)


def assert_equals_program(model, task, tokens):
    """The model's predictions equal the program's outputs on ``tokens``."""
    targets = task.targets(tokens)
    assert_matches(task, tokens, predict(model, tokens), targets, targets != tasks.IGNORE)


def check_ground_truth_patching(model, task, n: int):
    gt = model.ground_truth
    assert set(gt.variables) == set(task.program.names), "every program variable has a location"

    @hypothesis_settings(n)
    @given(strategies.interventions(task, max_size=32))
    def check(case):
        assert_ground_truth_patching(model, task, *case)

    check()


def assert_ground_truth_patching(model, task, base, source, variable, position):
    """Patching ``variable``'s ground-truth subspace at ``position`` with the source run's
    activation gives the interpreter's counterfactual outputs."""
    loc = model.ground_truth.variables[variable]
    src = model.run(torch.as_tensor(source), cache=[loc.site]).cache[loc.site]
    fn = patch(src, positions=torch.as_tensor(position + loc.lag), basis=loc.tensor())
    got = predict(model, base, interventions={loc.site: fn})
    cf = task.counterfactual(base, source, variable, position)
    assert_matches(task, base, got, cf.outputs, cf.mask)


def check_outside_ground_truth(model, task, n: int):
    @hypothesis_settings(n)
    @given(strategies.pairs(task, max_size=32))
    def check(pair):
        assert_outside_ground_truth(model, task, *pair)

    check()


def assert_outside_ground_truth(model, task, base, source):
    """Patching, from ``source``, the part of each site orthogonal to its ground-truth
    subspaces, and every site outside the circuit, leaves the outputs on ``base`` unchanged."""
    gt = model.ground_truth
    sites = {s.name: s for s in model.sites}
    outside = [s for s in sites if s not in gt.circuit and s not in gt.site_variables]
    expected = task.targets(base)
    mask = expected != tasks.IGNORE
    cache = model.run(torch.as_tensor(source), cache=list(gt.site_variables) + outside).cache
    for site in gt.site_variables:
        complement = _complement(gt.subspace_at(site), sites[site].width)
        if complement is not None:
            got = predict(model, base, interventions={site: patch(cache[site], basis=complement)})
            assert_matches(task, base, got, expected, mask)
    for site in outside:
        got = predict(model, base, interventions={site: patch(cache[site])})
        assert_matches(task, base, got, expected, mask)


@pytest.mark.parametrize("task_name,family,kind", CASES)
def test_compiled_model_equals_program(task_name, family, kind):
    check_equals_program(model_or_refusal(task_name, family, kind), tasks.get(task_name), EXAMPLES[kind])


@pytest.mark.parametrize("task_name,family,kind", CASES)
def test_ground_truth_patching_reproduces_counterfactuals(task_name, family, kind):
    check_ground_truth_patching(model_or_refusal(task_name, family, kind), tasks.get(task_name), EXAMPLES[kind])


@pytest.mark.parametrize("task_name,family,kind", CASES)
def test_patching_outside_ground_truth_changes_nothing(task_name, family, kind):
    check_outside_ground_truth(model_or_refusal(task_name, family, kind), tasks.get(task_name), EXAMPLES[kind] // 2)


@pytest.mark.parametrize("task_name,family", PAIRS)
def test_reparametrized_bases_are_not_axis_aligned(task_name, family):
    model = model_or_refusal(task_name, family, "reparametrized")
    tokens = model.ground_truth.variables[tasks.get(task_name).program.tokens.name]
    assert np.abs(tokens.basis).max() < 1 - 1e-6, "reparametrize left the token subspace axis-aligned"
    assert model.meta["reparametrized"] == 11


@pytest.mark.parametrize("family", zoo.FAMILIES)
def test_iia_on_changed_outputs_tells_a_causal_location_from_an_inert_one(family):
    task = tasks.get("sort")  # le3 moves few outputs: a patch that does nothing scores high on plain IIA
    model = model_or_refusal("sort", family)
    loc = model.ground_truth.variables["le3"]
    base, source, _, position = task.sample_interventions(256, seed=3, variable="le3")
    assert verify.iia(model, task, "le3", loc, base, source, position, changed_only=True) == 1.0  # exact
    inert = verify.predictions(model, base)  # what a location holding nothing gives: the base's outputs
    plain = verify.counterfactual_accuracy(task, "le3", base, source, position, inert)
    changed = verify.counterfactual_accuracy(task, "le3", base, source, position, inert, changed_only=True)
    assert 0.5 < plain < 1.0 and changed == 0.0
