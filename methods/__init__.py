"""Interpretability methods behind one small interface, plus controls.

>>> import methods, tasks, zoo
>>> model = zoo.compile("parity", "transformer")
>>> finding = methods.run("activation_patching", model, tasks.get("parity"), seed=0, budget=16)

A method is a callable ``(model, task, *, seed=0, budget=None, **options) -> Finding`` (see
:mod:`methods.registry`); findings are :class:`SiteScores`, :class:`Alignment`, :class:`Circuit`
(see :mod:`methods.finding`). The patching engine they share is :mod:`methods.patching`; long
methods tell how far they are with :func:`methods.progress.report` (never by printing).
Everything goes through ``model.sites``, ``model.run`` and ``zoo.sites.patch``/``add``: no
method knows a model's family. ``budget`` (default in brackets) and the main options:

======================  ===========  ========================================================
name                    finding      budget; options
======================  ===========  ========================================================
activation_patching     SiteScores   base inputs [32]; ablation="resample" (interchange with
 mean/zero/resample_                 paired sources), metric="logit"|"prob"|"logprob"|
 ablation                            "changed"|"kl", sites=
attribution_patching    SiteScores   base inputs [32]; ablation, metric (differentiable)
integrated_gradients    SiteScores   base inputs [32]; ablation, metric, steps=8
probes                  Alignment    inputs to fit, as many held out [64]; sites=, variables=
das                     Alignment    training pairs, as many held out [128]; steps=60, dims=,
                                     init="diff"|"pca"|"random", sites=, variables=
sae                     Alignment    inputs [64]; expansion=4, k=, steps=200
acdc                    Circuit      base inputs [32]; ablation="resample", threshold=0.01
subnetwork_probing      Circuit      base inputs [32]; ablation, steps=100, l0=0.01
random[_alignment|      controls     seeded RNG, never reads the model's weights
 _circuit]
oracle[_alignment|      controls     the ground truth (the only methods allowed to read it)
 _circuit]
======================  ===========  ========================================================
"""

from .finding import ABLATIONS, AlignedVariable, Alignment, Circuit, Featurizer, FindingError, SiteScores, alignment_iia, alignment_predictions, from_json
from .registry import ENTRY_POINT_GROUP, GuardedModel, get, names, reads_ground_truth, register, run

__all__ = [
    "ABLATIONS", "AlignedVariable", "Alignment", "Circuit", "ENTRY_POINT_GROUP", "Featurizer", "FindingError", "GuardedModel",
    "SiteScores", "alignment_iia", "alignment_predictions", "from_json", "get", "names", "reads_ground_truth", "register", "run",
]
