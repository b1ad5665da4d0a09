"""Test-wide settings: one torch thread (the models are tiny; extra threads only add overhead,
and oversubscribed cores slow small matmuls by orders of magnitude)."""

import torch

torch.set_num_threads(1)
