"""The LightningModule: a zoo model trained on behaviour, plus IIT and strict SIIT when planted.

Loss (see :mod:`zoo.training.iit`): ``CE(behaviour) + 1.0 * IIT + 0.4 * strict``; unplanted
training uses behaviour alone. Every ``eval_every`` steps the module measures held-out accuracy
and per-variable IIA on the same held-out data the card uses (so the stop decision and the card
agree) and stops the run when accuracy >= 99% and every IIA >= 95%. These checks skip IIA while
accuracy misses and stop at the first variable that misses (worst first), which makes them
cheap until the model is nearly done. Once IIA is measured, the variable each example intervenes
on is drawn with weight ``0.05 + (1 - IIA)``, so training spends its interventions where they lag.
The strict term's random subsets of sites come from a generator seeded with the run's seed.
"""

from __future__ import annotations

import lightning as L
import torch

from . import card
from .datamodule import to_tensors
from .iit import ce, planted_losses

LAG_FLOOR = 0.05  # a variable at IIA 1 is still drawn, at 1/6 the rate of one at IIA 0.75


class ZooLightningModule(L.LightningModule):
    def __init__(self, model, task, *, planted: bool, locations=None, strict=None, lr: float = 3e-3, eval_every: int = 50, eval_n: int = 512, weight_decay: float = 0.0, seed: int = 0):
        super().__init__()
        self.model, self.task, self.planted = model, task, planted
        self.locations, self.strict = locations or {}, strict or {}
        self.lr, self.eval_every, self.eval_n, self.weight_decay = lr, eval_every, eval_n, weight_decay
        self.last_measure = None
        self.last_iia: dict[str, float] = {}
        self.generator = torch.Generator().manual_seed(int(seed))  # the strict term's draws

    def training_step(self, batch, batch_idx):
        batch = to_tensors(batch, self.device)
        if self.planted:
            locations = {k: [(s, b.to(self.device)) for s, b in locs] for k, locs in self.locations.items()}
            strict = {k: m.to(self.device) for k, m in self.strict.items()}
            losses = planted_losses(self.model, batch, locations, strict, generator=self.generator)
        else:
            losses = {"loss": ce(self.model(batch["base"]), batch["targets"])}
        for k, v in losses.items():
            self.log(k, v.detach(), prog_bar=k in ("loss", "iit"), on_step=True, on_epoch=False, batch_size=batch["base"].shape[0])
        return losses["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx):
        step = self.global_step
        if self.eval_every and step % self.eval_every == 0:
            worst_first = sorted(self.last_iia, key=self.last_iia.get)
            acc, iia = card.measure(self.model, self.task, self.trainer.datamodule, n=self.eval_n, early_exit=True, order=worst_first)
            self.last_measure = (step, acc, iia)
            self.last_iia.update(iia)
            if self.planted and iia:  # spend the interventions on the variables that lag
                stream = self.trainer.datamodule.stream
                stream.weights = [LAG_FLOOR + max(0.0, 1.0 - self.last_iia.get(v, 0.5)) for v in stream.variables]
            self.log("heldout_acc", acc, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            if iia:
                self.log("min_iia", min(iia.values()), prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            if card.reached(acc, iia) and len(iia) == len(self.locations):
                self.trainer.should_stop = True

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return opt
