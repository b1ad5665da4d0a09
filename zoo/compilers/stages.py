"""Ground truth of a program compiled through a rewrite (:mod:`tasks.rewrite`): stages apart.

A compiler that implements a ``Scan`` by its parallel prefix compiles the rewritten program and
builds its ground truth as for any program, every variable of the rewritten program with a
location. :func:`with_stages` then moves the implementation variables (the rewrite's
``stage_of``) out of ``variables`` into ``stages``, marks each with the program variable it
implements (``stage_of``), and gives the implemented variable the components of all its stages
as well as its own (the whole prefix computes it). Stages keep their own ``components`` entries
and stay in ``site_variables`` (their subspaces are in use at those sites: patching what lies
outside every listed subspace must change nothing).
"""

from __future__ import annotations

from dataclasses import replace

from ..ground_truth import GroundTruth


def with_stages(gt: GroundTruth, stage_of: dict[str, str]) -> GroundTruth:
    """``gt`` with the variables named in ``stage_of`` moved to ``stages`` (see the module doc)."""
    if not stage_of:
        return gt
    variables = {n: loc for n, loc in gt.variables.items() if n not in stage_of}
    stages = {n: gt.variables[n] for n in stage_of}
    below: dict[str, list[str]] = {}
    for stage, var in stage_of.items():  # in the rewrite's order: earliest stage first
        below.setdefault(var, []).extend(gt.components.get(stage, ()))
    components = dict(gt.components)
    for var, comps in below.items():
        components[var] = tuple(dict.fromkeys(comps + list(gt.components.get(var, ()))))
    return replace(gt, variables=variables, components=components, stages=stages, stage_of=dict(stage_of))
