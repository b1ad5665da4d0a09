"""Fresh training batches from a task's sampler, and a fixed held-out split, all seeded.

Every training step draws a new batch (no sample is reused across steps or epochs): a base and
a source input (``task.sample_interventions``: the position is uniform over positions where the
chosen variable differs between base and source; the variable is drawn with weights that favour
the variables whose held-out IIA lags, see ``ZooLightningModule``), the base's targets, and the
program's counterfactual outputs for the interchange intervention. The seed of step s of epoch e on rank r is ``SeedSequence([seed, 0, r, e, s])``;
held-out data uses ``[seed, 1, ...]``, so the two streams never share a seed.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from tasks import Task


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def make_batch(task: Task, n: int, seed: int, variables: list[str], weights=None) -> dict:
    """One training batch (numpy); see the module docstring. ``weights``: the chance of each
    variable being the one intervened on (uniform when None)."""
    rng = np.random.default_rng(seed)
    if variables:
        p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
        name = str(variables[int(rng.choice(len(variables), p=p))])
    else:
        name = task.program.output.name
    base, source, name, position = task.sample_interventions(n, seed=int(rng.integers(2**31)), variable=name)
    batch = {"base": base, "source": source, "targets": task.targets(base), "variable": name, "position": position}
    if variables:
        batch["cf_targets"] = task.counterfactual(base, source, name, position).outputs
    return batch


class _Stream(IterableDataset):
    def __init__(self, task, batch_size, seed, steps_per_epoch, variables):
        self.task, self.batch_size, self.seed, self.steps = task, batch_size, seed, steps_per_epoch
        self.variables = variables
        self.epoch, self.rank = 0, 0
        self.weights = None  # per-variable sampling weights, set by the module from its held-out IIA

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        for s in range(self.steps):
            yield make_batch(self.task, self.batch_size, derive_seed(self.seed, 0, self.rank, epoch, s), self.variables, self.weights)

    def __len__(self):
        return self.steps


class TaskDataModule(L.LightningDataModule):
    """Training batches drawn fresh every step; ``heldout()`` gives the held-out split."""

    def __init__(self, task: Task, *, seed: int = 0, batch_size: int = 64, steps_per_epoch: int = 100, variables=()):
        super().__init__()
        self.task, self.seed, self.batch_size = task, int(seed), int(batch_size)
        self.stream = _Stream(task, self.batch_size, self.seed, steps_per_epoch, list(variables))

    def setup(self, stage=None):
        if self.trainer is not None:  # each DDP rank draws its own batches
            self.stream.rank = int(self.trainer.global_rank)

    def train_dataloader(self):
        return DataLoader(self.stream, batch_size=None, num_workers=0)

    def heldout(self, n: int = 512):
        """Held-out inputs ``[n, L]`` (seed stream 1)."""
        return self.task.sample(n, seed=derive_seed(self.seed, 1, 0)).tokens

    def heldout_pairs(self, variable: str, k: int, n: int = 256):
        """Held-out (base, source, variable, position) for one variable."""
        return self.task.sample_interventions(n, seed=derive_seed(self.seed, 1, 1, k), variable=variable)


def to_tensors(batch: dict) -> dict:
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
