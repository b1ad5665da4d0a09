"""The site interface on a toy model: taps, caches, patches inside the time loop, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo import GroundTruth, Location, Site, ZooModel, add, patch


class Accumulator(ZooModel):
    """h_t = h_{t-1} + onehot(x_t): a counter per token, tapped inside the loop."""

    family = "toy"

    def __init__(self, vocab: int = 3, max_len: int = 8):
        super().__init__()
        self.vocab_size, self.max_len = vocab, max_len
        self.readout = torch.nn.Linear(vocab, 2)

    def site_list(self):
        return [Site("embed", 0, "embed", self.vocab_size), Site("L0.hidden", 0, "hidden", self.vocab_size, recurrent=True)]

    def _forward(self, tokens, tap):
        x = tap("embed", torch.nn.functional.one_hot(tokens, self.vocab_size).float())
        h = torch.zeros(tokens.shape[0], self.vocab_size)
        states = []
        for t in range(tokens.shape[1]):
            h = tap("L0.hidden", h + x[:, t], t=t)
            states.append(h)
        return torch.stack(states, 1)  # "logits" = the counts, to read them directly


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(0, 7), st.integers(1, 6))
def test_patching_a_recurrent_state_flows_into_later_steps(length, j, batch):
    model = Accumulator()
    j = min(j, length - 1)
    g = torch.Generator().manual_seed(length * 31 + j)
    base, source = torch.randint(0, 3, (batch, length), generator=g), torch.randint(0, 3, (batch, length), generator=g)
    src = model.run(source, cache=["L0.hidden"]).cache["L0.hidden"]
    out = model.run(base, interventions={"L0.hidden": patch(src, positions=j)}).logits
    plain = model.run(base).logits
    onehot = torch.nn.functional.one_hot(base, 3).float()
    # from j on, the count restarts from the source's state at j
    later = torch.cumsum(torch.cat([torch.zeros(batch, 1, 3), onehot[:, j + 1 :]], 1), 1)
    expected = torch.cat([plain[:, :j], src[:, j : j + 1] + later], 1)
    assert torch.equal(out[:, :j], plain[:, :j])
    assert torch.allclose(out, expected)


def test_cache_has_every_position_and_matches_plain_run():
    model = Accumulator()
    tokens = torch.tensor([[0, 1, 2, 1, 1]])
    res = model.run(tokens, cache=["embed", "L0.hidden"])
    assert res.cache["embed"].shape == (1, 5, 3) and res.cache["L0.hidden"].shape == (1, 5, 3)
    assert torch.equal(res.cache["L0.hidden"], res.logits)
    assert torch.equal(model(tokens), res.logits)


def test_patch_with_a_basis_only_replaces_that_subspace_and_per_example_positions():
    model = Accumulator()
    base, source = torch.tensor([[1, 1, 1], [2, 2, 2]]), torch.tensor([[0, 0, 0], [0, 0, 0]])
    src = model.run(source, cache=["embed"]).cache["embed"]
    basis = torch.tensor([[1.0, 0.0, 0.0]])
    out = model.run(base, interventions={"embed": patch(src, positions=torch.tensor([0, 2]), basis=basis)}).logits
    # example 0: position 0 gets token-0's component added, its token-1 component kept
    assert out[0, 0].tolist() == [1.0, 1.0, 0.0] and out[0, 2].tolist() == [1.0, 3.0, 0.0]
    # example 1: only position 2 is patched
    assert out[1, 1].tolist() == [0.0, 0.0, 2.0] and out[1, 2].tolist() == [1.0, 0.0, 3.0]


def test_gradient_through_an_additive_intervention_reaches_every_step():
    model = Accumulator()
    tokens = torch.tensor([[0, 1, 2, 1]])
    delta = torch.zeros(1, 4, 3, requires_grad=True)
    out = model.run(tokens, interventions={"L0.hidden": add(delta)}).logits
    (grad,) = torch.autograd.grad(out[:, -1, 1].sum(), delta)
    # the count of token 1 at the last step depends on the state's token-1 unit at every step
    assert torch.equal(grad[0, :, 1], torch.ones(4)) and grad[0, :, [0, 2]].abs().sum() == 0


def test_unknown_site_and_bad_tokens_raise_clear_errors():
    model = Accumulator()
    with pytest.raises(KeyError, match="unknown site 'L9.hidden'.*embed, L0.hidden"):
        model.run(torch.zeros(1, 2, dtype=torch.long), cache=["L9.hidden"])
    with pytest.raises(ValueError, match=r"token id 5 is outside.*0\.\.2"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match=r"length 9 exceeds this model's max_len 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_ground_truth_round_trips_through_json_and_checks_orthonormality():
    gt = GroundTruth({"x": Location("L0.hidden", np.eye(3)[:2])}, {"x": ("L0.hidden",)}, ("L0.hidden",), (), {"L0.hidden": ("x",)})
    back = GroundTruth.from_json(gt.to_json())
    assert np.array_equal(back.variables["x"].basis, gt.variables["x"].basis) and back.circuit == gt.circuit
    assert np.allclose(back.subspace_at("L0.hidden") @ np.eye(3)[2], 0)
    with pytest.raises(ValueError, match="orthonormal"):
        Location("s", np.array([[1.0, 1.0]]))
