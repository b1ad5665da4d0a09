"""Planted training on a GPU (Lightning's ``accelerator="gpu"``), skipped where torch sees no CUDA
device: the batch, the IIT and strict masks and the held-out checks follow the model onto the
device, the run is seeded, and the model comes back on the CPU with its card."""

from __future__ import annotations

import pytest
import torch

import tasks
from zoo import store
from zoo.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _sort(family, accelerator, steps):
    # sort: every kind of planted example (carriers, relays in the RNN, strict sites, whole-sequence patches)
    return train("sort", family, accelerator=accelerator, seed=0, max_steps=steps, eval_every=10, batch_size=16)


@pytest.mark.parametrize("family", ["transformer", "rnn", "ssm"])
def test_planted_training_on_a_gpu_is_seeded_matches_the_cpu_and_reloads_bit_identically(family, tmp_path):
    a, b = _sort(family, "gpu", 30), _sort(family, "gpu", 30)
    assert all(p.device.type == "cpu" for p in a.parameters())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    card = a.meta["card"]
    assert card["steps"] == 30 and set(card["iia"]) == set(tasks.get("sort").program.names)
    a.save(tmp_path / "m")
    back = store.load(tmp_path / "m")
    tokens = torch.as_tensor(tasks.get("sort").sample(64, seed=3).tokens)
    assert torch.equal(a(tokens), back(tokens))
    # the same batches, masks and losses as on the CPU, up to float rounding: Adam's first steps are
    # about lr * sign(gradient), so a gradient at rounding level may flip a few coordinates by ~lr
    # (cuDNN's RNN computes in TF32 unless told not to: with it, 0.966 of sort's RNN weights agree)
    cpu = _sort(family, "cpu", 5)
    tf32, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    try:
        gpu = _sort(family, "gpu", 5)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    diff = torch.cat([(v - gpu.state_dict()[k]).abs().flatten() for k, v in cpu.state_dict().items()])
    agree = float((diff <= 1e-4).float().mean())
    assert agree >= 0.99, f"{agree:.4f} of the weights agree"
