"""Fresh training batches from a task's sampler, and a fixed held-out split, all seeded.

Every training step draws a new batch (no sample is reused across steps or epochs): base and
source inputs, the base's targets, and for every example the interchange intervention it trains
(see :mod:`zoo.training.iit`): a variable (drawn per example, with weights that favour the
variables whose held-out IIA lags, see ``ZooLightningModule``), a position (uniform over the
positions where the variable differs between base and source, or for ``NOOP_RATE`` of examples
uniform over all positions), the positions its block is patched at (that one and wherever the
variable agrees), the location (0: the variable's own site; k > 0: its k-th carrier), and the
program's counterfactual outputs. ``EVERYWHERE_RATE`` of a per-position variable's examples
replace it at every position. The seed of step s of epoch e on rank r is
``SeedSequence([seed, 0, r, e, s])``; held-out data uses ``[seed, 1, ...]``, so the two streams
never share a seed.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from tasks import Task


NOOP_RATE = 0.5  # share of IIT examples at a uniform position, where base and source may agree
EVERYWHERE_RATE = 0.25  # share of a per-position variable's IIT examples that replace it at every position
CARRIER_RATE = 0.5  # share of IIT examples on a block that carries the variable (a relay, a later stream point)


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def make_batch(task: Task, n: int, seed: int, variables: list[str], weights=None, carriers=None) -> dict:
    """One training batch (numpy); see the module docstring. ``weights``: the chance of each
    variable being the one an example intervenes on (uniform when None); ``carriers``: variable
    -> how many blocks carry it beyond its own site (see ``strict.carriers``)."""
    rng = np.random.default_rng(seed)
    base = task.sample(n, seed=int(rng.integers(2**31))).tokens
    source = task.sample(n, seed=int(rng.integers(2**31))).tokens
    if not variables:
        return {"base": base, "source": source, "targets": task.targets(base)}
    vb, vs = task.run(base), task.run(source)
    targets = task.to_classes(vb[task.output.name], task.readout_mask(base))  # task.targets(base), without running the program again
    batch = {"base": base, "source": source, "targets": targets}
    L = base.shape[1]
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    which = rng.choice(len(variables), size=n, p=p)
    position = np.zeros(n, dtype=np.int64)
    location = np.zeros(n, dtype=np.int64)
    cf_targets = targets.copy()
    iit_mask = np.zeros((n, L), dtype=bool)
    for k, name in enumerate(variables):
        rows = np.flatnonzero(which == k)
        if not rows.size:
            continue
        agree = vb[name][rows] == vs[name][rows]
        pos = _position(rng, ~agree)
        noop = rng.random(rows.size) < NOOP_RATE  # anywhere, also where base and source agree
        pos = np.where(noop, rng.integers(1, L, size=rows.size), pos)
        cf = task.counterfactual(base[rows], source[rows], name, pos).outputs
        same = agree[np.arange(rows.size), pos]
        cf = np.where(same[:, None], targets[rows], cf)  # a no-op: every output stays
        mask = agree | (np.arange(L)[None, :] == pos[:, None])
        if task.program[name].per_position:  # some examples replace the variable at every position
            every = rng.random(rows.size) < EVERYWHERE_RATE
            if every.any():
                whole = np.ones((int(every.sum()), L), dtype=bool)
                whole[:, 0] = False
                cf[every] = task.replaced(base[rows][every], source[rows][every], name, whole).outputs
                mask[every] = whole
        m = int((carriers or {}).get(name, 0))
        loc = np.where(rng.random(rows.size) < CARRIER_RATE, rng.integers(1, m + 1, size=rows.size), 0) if m else np.zeros(rows.size, dtype=np.int64)
        carried = loc > 0  # a block carrying the variable up: checked where base and source agree only
        cf[carried], mask[carried] = targets[rows][carried], agree[carried]
        position[rows], location[rows], cf_targets[rows], iit_mask[rows] = pos, loc, cf, mask
    batch.update(variable=which, position=position, location=location, cf_targets=cf_targets, iit_mask=iit_mask)
    return batch


def _position(rng: np.random.Generator, differs: np.ndarray) -> np.ndarray:
    """Per row, a position >= 1 drawn uniformly where ``differs`` (anywhere >= 1 when nowhere)."""
    n, L = differs.shape
    differs = differs & (np.arange(L)[None, :] >= 1)
    weights = np.where(differs.any(axis=1, keepdims=True), differs, np.arange(L)[None, :] >= 1).astype(float)
    u = rng.random((n, 1)) * weights.sum(axis=1, keepdims=True)
    return np.minimum((np.cumsum(weights, axis=1) < u).sum(axis=1), L - 1)


class _Stream(IterableDataset):
    def __init__(self, task, batch_size, seed, steps_per_epoch, variables, carriers=None):
        self.task, self.batch_size, self.seed, self.steps = task, batch_size, seed, steps_per_epoch
        self.variables, self.carriers = variables, carriers or {}
        self.epoch, self.rank = 0, 0
        self.weights = None  # per-variable sampling weights, set by the module from its held-out IIA

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        for s in range(self.steps):
            yield make_batch(self.task, self.batch_size, derive_seed(self.seed, 0, self.rank, epoch, s), self.variables, self.weights, self.carriers)

    def __len__(self):
        return self.steps


class TaskDataModule(L.LightningDataModule):
    """Training batches drawn fresh every step; ``heldout()`` gives the held-out split."""

    def __init__(self, task: Task, *, seed: int = 0, batch_size: int = 64, steps_per_epoch: int = 100, variables=(), carriers=None):
        super().__init__()
        self.task, self.seed, self.batch_size = task, int(seed), int(batch_size)
        self.stream = _Stream(task, self.batch_size, self.seed, steps_per_epoch, list(variables), carriers)

    def setup(self, stage=None):
        if self.trainer is not None:  # each DDP rank draws its own batches
            self.stream.rank = int(self.trainer.global_rank)

    def train_dataloader(self):
        return DataLoader(self.stream, batch_size=None, num_workers=0)

    def heldout(self, n: int = 512):
        """Held-out inputs ``[n, L]`` (seed stream 1)."""
        return self.task.sample(n, seed=derive_seed(self.seed, 1, 0)).tokens

    def heldout_sources(self, n: int = 512):
        """Other held-out inputs ``[n, L]``, the sources of held-out patches (seed stream 1)."""
        return self.task.sample(n, seed=derive_seed(self.seed, 1, 2)).tokens

    def heldout_pairs(self, variable: str, k: int, n: int = 256):
        """Held-out (base, source, variable, position) for one variable."""
        return self.task.sample_interventions(n, seed=derive_seed(self.seed, 1, 1, k), variable=variable)


def to_tensors(batch: dict, device=None) -> dict:
    return {k: torch.as_tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
