"""Example (docs/property-testing.md): a user's own property test on their own method.

The method, ``output_in_last_site``, claims that a model's output variable lives in the whole of
its last site (the one the readout reads). The property: for *any* small program compiled into
*any* family, compiled or reparametrized, patching that location at any position with a source
run reproduces the interpreter's counterfactual. Hypothesis draws the program, the family, the
kind and the intervention, and would shrink a failure to the smallest of each. The same claim
searched by the CLI: ``zoo falsify tests.test_example_property:output_in_last_site --property patch``
(it finds nothing); the companion claim on the *first* site is falsified there
(tests/test_falsify.py shows the smallest case).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import methods
from methods.finding import AlignedVariable, Alignment, alignment_predictions
from tasks import strategies
from zoo.strategies import models


def output_in_last_site(model, task, *, seed=0, budget=None) -> Alignment:
    """My method: the output variable is the whole last site (a method sees sites, never ground truth)."""
    site = model.sites[-1]
    return Alignment({task.output.name: AlignedVariable(site.name, np.eye(site.width))}, "output_in_last_site")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(models(strategies.programs(max_nodes=4)), st.data())
def test_my_method_locates_the_output(case, data):
    task, model = case.task, case.model
    finding = methods.run(output_in_last_site, model, task)
    output = task.output.name
    base, source, _, position = data.draw(strategies.interventions(task, max_size=4, variables=[output]))
    _, _, _, patched = alignment_predictions(model, task, output, finding.variables[output], pairs=(base, source, output, position))
    expected = task.counterfactual(base, source, output, position)
    counted = expected.mask
    assert (patched[counted] == expected.outputs[counted]).all(), f"{case}: {task.program.describe()}"
