"""The LightningModule: a zoo model trained on behaviour, plus IIT and strict SIIT when planted.

Loss (see :mod:`zoo.training.iit`): ``CE(behaviour) + 1.0 * IIT + 0.4 * strict``; unplanted
training uses behaviour alone. Every ``eval_every`` steps the module measures held-out accuracy
and per-variable IIA on the same held-out data the card uses (so the stop decision and the card
agree) and stops the run when accuracy >= 99% and every IIA >= 95%.
"""

from __future__ import annotations

import lightning as L
import torch

from . import card
from .datamodule import to_tensors
from .iit import ce, planted_losses


class ZooLightningModule(L.LightningModule):
    def __init__(self, model, task, *, planted: bool, locations=None, free=None, lr: float = 3e-3, eval_every: int = 50, eval_n: int = 512, weight_decay: float = 0.0):
        super().__init__()
        self.model, self.task, self.planted = model, task, planted
        self.locations, self.free = locations or {}, free or {}
        self.lr, self.eval_every, self.eval_n, self.weight_decay = lr, eval_every, eval_n, weight_decay
        self.last_measure = None

    def training_step(self, batch, batch_idx):
        batch = to_tensors(batch)
        if self.planted:
            locations = {k: (s, b.to(self.device)) for k, (s, b) in self.locations.items()}
            free = {k: b.to(self.device) for k, b in self.free.items()}
            losses = planted_losses(self.model, batch, locations, free)
        else:
            losses = {"loss": ce(self.model(batch["base"]), batch["targets"])}
        for k, v in losses.items():
            self.log(k, v.detach(), prog_bar=k in ("loss", "iit"), on_step=True, on_epoch=False, batch_size=batch["base"].shape[0])
        return losses["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx):
        step = self.global_step
        if self.eval_every and step % self.eval_every == 0:
            acc, iia = card.measure(self.model, self.task, self.trainer.datamodule, n=self.eval_n)
            self.last_measure = (step, acc, iia)
            self.log("heldout_acc", acc, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            if iia:
                self.log("min_iia", min(iia.values()), prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            if card.reached(acc, iia):
                self.trainer.should_stop = True

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return opt
