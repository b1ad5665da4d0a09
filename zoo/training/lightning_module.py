"""The LightningModule: a zoo model trained on behaviour, plus IIT and strict SIIT when planted.

Loss (see :mod:`zoo.training.iit`): ``CE(behaviour) + 1.0 * IIT + 0.4 * strict``; unplanted
training uses behaviour alone. Every ``eval_every`` steps the module measures held-out accuracy
and per-variable IIA on the same held-out data the card uses (so the stop decision and the card
agree) and stops the run when accuracy >= 99% and every IIA >= 95%. These checks skip IIA while
accuracy misses and stop at the first variable that misses (worst first), which makes them
cheap until the model is nearly done. Once IIA is measured, the variable each example intervenes
on is drawn with weight ``0.05 + (1 - IIA)``, so training spends its interventions where they lag.

Planted, once accuracy is on target, every ``STRICT_EVERY``-th check and every check at which
the targets hold also measure each strict site's held-out accuracy with its strict patch applied
alone (``card.strict_accuracy``, as the card does). The sites below ``card.STRICT_TARGET``
become the strict term's ``focus`` (patched alone in half the examples,
:func:`zoo.training.iit.strict_masks`), and the run keeps going after the targets are reached
until no site lags, for at most as many steps again as it took to reach them and at least
``STRICT_PATIENCE`` steps (counted in steps, so the stop stays deterministic): a model that
reaches IIA fast (``reverse``'s transformer in 600 steps) otherwise keeps reading coordinates its
ground truth says nothing depends on. The strict term's random draws come from a generator
seeded with the run's seed.

Once held-out accuracy has first reached ``ANNEAL_FROM``, and ``ANNEAL_AFTER`` steps later it
still has not reached its target at any check, AdamW's learning rate is ``ANNEAL_FACTOR`` times
the run's until it does: the last percents of a behaviour that hovers are learnt at a lower
rate, and the full rate returns for the planted variables once the behaviour is learnt. A run
that goes from 0.95 to 0.99 within ``ANNEAL_AFTER`` steps is untouched. At 2e-3 throughout,
permutation's transformer without LayerNorm (see ``alignment.PAIR_CONFIG``) hovers between 0.96
and 0.99 for ten minutes and reaches its targets at step 19,750; with the drop, at step 12,900
(in ``zoo build``'s 12 minutes). Decided at the checks, so deterministic.

``give_up_s``: at the first check past this many seconds of training, a run whose held-out
accuracy has not reached ``GIVE_UP_BELOW`` at any check stops (it will not reach its targets:
first_occurrence's RNN sat at 0.85 by 6 minutes with the layer feeding its lookup kept silent,
as modular_addition's SSM did with one MLP decoding its sum); a run past it keeps going, up to
the trainer's ``max_time``, for its last percents of behaviour (permutation's transformer without
LayerNorm is at 0.91-0.93 at 6 minutes and reaches its targets at 11.8), its planted variables
and strict sites (``sort``'s SSM is at 0.98 accuracy at 5 to 7 minutes and reaches every target
after 8). The decision is rank 0's, broadcast, so every process stops at the same step.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from . import card
from .datamodule import to_tensors
from .iit import ce, planted_losses

LAG_FLOOR = 0.05  # a variable at IIA 1 is still drawn, at 1/6 the rate of one at IIA 0.75
STRICT_EVERY = 4  # before the targets are reached, strict sites are measured every 4th check (sort's SSM: 13 sites, 3.5 s)
STRICT_PATIENCE = 1000  # once the targets are reached at step s, wait for the strict sites until step s + max(s, 1000)
# the learning rate times 0.3 from ANNEAL_AFTER steps after held-out accuracy first reached 0.95 until it reaches its target
ANNEAL_FROM, ANNEAL_AFTER, ANNEAL_FACTOR = 0.95, 250, 0.3
GIVE_UP_BELOW = 0.9  # give_up_s stops a run whose held-out accuracy has not reached this at any check


class ZooLightningModule(L.LightningModule):
    def __init__(self, model, task, *, planted: bool, locations=None, strict=None, lr: float, eval_every: int = 50, eval_n: int = 512, weight_decay: float = 0.0, seed: int = 0,
                 wiring=None, give_up_s: float | None = None):
        super().__init__()
        self.model, self.task, self.planted = model, task, planted
        self.locations, self.strict = locations or {}, strict or {}
        self.wiring = wiring or {}  # parameter name -> bool mask: the weights held at 0 are the False ones (zoo.training.wiring)
        self.lr, self.eval_every, self.eval_n, self.weight_decay = lr, eval_every, eval_n, weight_decay
        self.last_measure = None
        self.last_iia: dict[str, float] = {}
        self.generator = torch.Generator().manual_seed(int(seed))  # the strict term's draws
        self.focus: tuple[str, ...] = ()  # the strict sites that lag at the last check
        self.reached_at: int | None = None  # the first step at which the targets held
        self.strict_cols = {k: m.numpy() for k, m in self.strict.items()}  # as card.strict_accuracy takes them
        self.give_up_s, self.started, self.best_acc = give_up_s, None, 0.0
        self.near_since: int | None = None  # the first check at which held-out accuracy reached ANNEAL_FROM
        self.stopped: str | None = None  # "targets" or "gave up" when this module ends the run

    @property
    def shows_bar(self) -> bool:
        """Whether anything reads what ``self.log`` records: ``train`` has no logger, so only a
        progress bar does (without one, Lightning's logging cost 1 ms a step for nothing)."""
        return self.trainer.progress_bar_callback is not None

    def on_train_start(self):
        self.started = time.perf_counter()
        self.wiring = {name: keep.to(self.device) for name, keep in self.wiring.items()}  # once, not every step

    def training_step(self, batch, batch_idx):
        batch = to_tensors(batch, self.device)
        if self.planted:
            locations = {k: [(s, b.to(self.device)) for s, b in locs] for k, locs in self.locations.items()}
            strict = {k: m.to(self.device) for k, m in self.strict.items()}
            losses = planted_losses(self.model, batch, locations, strict, generator=self.generator, focus=self.focus)
        else:
            losses = {"loss": ce(self.model(batch["base"]), batch["targets"])}
        if self.shows_bar:
            for k, v in losses.items():
                self.log(k, v.detach(), prog_bar=k in ("loss", "iit"), on_step=True, on_epoch=False, batch_size=batch["base"].shape[0])
        return losses["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx):
        step = self.global_step
        if self.eval_every and step % self.eval_every == 0:
            worst_first = sorted(self.last_iia, key=self.last_iia.get)
            acc, iia = card.measure(self.model, self.task, self.trainer.datamodule, n=self.eval_n, early_exit=True, order=worst_first)
            self.last_measure = (step, acc, iia)
            self.best_acc = max(self.best_acc, acc)
            if self.near_since is None and self.best_acc >= ANNEAL_FROM:
                self.near_since = step
            hovering = self.best_acc < card.ACCURACY_TARGET and self.near_since is not None and step >= self.near_since + ANNEAL_AFTER
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = self.lr * (ANNEAL_FACTOR if hovering else 1.0)
            self.last_iia.update(iia)
            if self.planted and iia:  # spend the interventions on the variables that lag
                stream = self.trainer.datamodule.stream
                stream.weights = [LAG_FLOOR + max(0.0, 1.0 - self.last_iia.get(v, 0.5)) for v in stream.variables]
            if self.shows_bar:
                self.log("heldout_acc", acc, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
                if iia:
                    self.log("min_iia", min(iia.values()), prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            targets = card.reached(acc, iia) and len(iia) == len(self.locations)
            if self.planted and self.strict and acc >= card.ACCURACY_TARGET and (targets or (step // self.eval_every) % STRICT_EVERY == 0):
                held = card.strict_accuracy(self.model, self.task, self.trainer.datamodule, self.strict_cols, n=self.eval_n)
                self.focus = tuple(s for s in sorted(held) if held[s] < card.STRICT_TARGET)
            if targets:
                self.reached_at = step if self.reached_at is None else self.reached_at
                if not self.focus or step >= self.reached_at + max(self.reached_at, STRICT_PATIENCE):
                    self.trainer.should_stop, self.stopped = True, "targets"
            if self.give_up_s is not None and self.best_acc < GIVE_UP_BELOW:
                late = time.perf_counter() - self.started >= self.give_up_s
                if self.trainer.strategy.broadcast(late, src=0):
                    self.trainer.should_stop, self.stopped = True, "gave up"

    def on_before_optimizer_step(self, optimizer):
        """Hold the wired weights at 0 (``zoo.training.wiring``): their gradient is zeroed after
        the backward pass (and DDP's averaging), before clipping and the step; AdamW without weight
        decay then leaves them exactly 0."""
        for name, keep in self.wiring.items():
            grad = getattr(self.model, name).grad
            if grad is not None:
                grad.masked_fill_(~keep, 0.0)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return opt
