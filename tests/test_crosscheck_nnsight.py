"""An independent cross-check of our patches: the same intervention done by nnsight.

Each compiled model's weights are copied into an independent reference written with plain
torch.nn modules (an RNN as a chain of ``torch.nn.RNNCell`` calls; a transformer with an output
projection module per layer). nnsight patches the reference (an RNN cell's output at time t,
which the loop carries into t+1; a head's slice of the output projection's input at position j)
and must give the same logits as ``model.run`` with our own interventions.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import tasks
import zoo
from zoo import patch

nnsight = pytest.importorskip("nnsight")


class ReferenceRNN(nn.Module):
    def __init__(self, model):
        super().__init__()
        rnn = model.to_torch_rnn()
        self.embed = nn.Embedding.from_pretrained(model.embed.weight.detach().clone())
        self.cells = nn.ModuleList()
        for k in range(rnn.num_layers):
            cell = nn.RNNCell(getattr(rnn, f"weight_ih_l{k}").shape[1], rnn.hidden_size, nonlinearity="relu")
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(rnn, f"{name}_l{k}"))
            self.cells.append(cell)
        self.readout = model.readout

    def forward(self, tokens):
        x = self.embed(tokens)
        for cell in self.cells:
            h = x.new_zeros(x.shape[0], cell.hidden_size)
            states = []
            for t in range(x.shape[1]):
                h = cell(x[:, t], h)
                states.append(h)
            x = torch.stack(states, 1)
        return self.readout(x)


class ReferenceAttention(nn.Module):
    def __init__(self, model, layer):
        super().__init__()
        c = model.config
        self.H, self.dh, self.scale = c.n_heads, c.d_head, float(model.attn_scale[layer])
        self.W_Q, self.W_K, self.W_V = (w[layer].detach() for w in (model.W_Q, model.W_K, model.W_V))
        self.out = nn.Linear(c.n_heads * c.d_head, c.d_model, bias=False)
        with torch.no_grad():
            self.out.weight.copy_(model.W_O[layer].detach().reshape(c.n_heads * c.d_head, c.d_model).T)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = (torch.einsum("btd,hde->bhte", x, w) for w in (self.W_Q, self.W_K, self.W_V))
        scores = (q @ k.transpose(-1, -2)) * self.scale
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        z = torch.softmax(scores, -1) @ v  # [B, H, T, dh]
        return self.out(z.transpose(1, 2).reshape(B, T, self.H * self.dh))


class ReferenceTransformer(nn.Module):
    def __init__(self, model):
        super().__init__()
        assert not model.config.layer_norm
        self.m = model
        self.attn = nn.ModuleList(ReferenceAttention(model, l) for l in range(model.config.n_layers))

    def forward(self, tokens):
        m = self.m
        x = m.embed[tokens] + m.pos_embed[: tokens.shape[1]]
        for l, attn in enumerate(self.attn):
            x = x + attn(x)
            x = x + torch.relu(x @ m.W_in[l] + m.b_in[l]) @ m.W_out[l] + m.b_out[l]
        return x @ m.W_U + m.b_U


def _compiled_and_wrapped(task_name, family, reference, seeds, atol):
    """The compiled model, its weights in ``reference`` (checked equal on a base batch) wrapped by
    nnsight, and a base and a source batch."""
    task = tasks.get(task_name)
    model = zoo.compile(task, family)
    ref = reference(model)
    base, source = (torch.as_tensor(task.sample(16, seed=s).tokens) for s in seeds)
    assert torch.allclose(ref(base), model(base), atol=atol)
    return task, model, nnsight.NNsight(ref), base, source


@pytest.mark.parametrize("task_name", ["parity", "induction", "permutation"])
def test_nnsight_patch_of_an_rnn_state_equals_run_with_interventions(task_name):
    task, model, wrapped, base, source = _compiled_and_wrapped(task_name, "rnn", ReferenceRNN, seeds=(1, 2), atol=1e-5)
    later = 0  # patches whose effect reached a later time step (the state flowed into t+1)
    for layer in range(model.config.num_layers):
        for t in (1, task.max_len // 2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with wrapped.trace(source) as tracer:
                    for _ in tracer.iter[t]:
                        src_state = wrapped.cells[layer].output.save()
                with wrapped.trace(base) as tracer:
                    for _ in tracer.iter[t]:
                        wrapped.cells[layer].output[:] = src_state
                    theirs = wrapped.output.save()
            src_cache = model.run(source, cache=[f"L{layer}.hidden"]).cache[f"L{layer}.hidden"]
            ours = model.run(base, interventions={f"L{layer}.hidden": patch(src_cache, positions=t)}).logits
            assert torch.allclose(ours, theirs, atol=1e-4)
            assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
            later += int((ours.argmax(-1) != model(base).argmax(-1))[:, t + 1 :].any())
    assert later > 0, "no state patch changed a later output: the check would be vacuous"


@pytest.mark.parametrize("task_name", ["induction", "sort"])
def test_nnsight_patch_of_a_transformer_head_equals_run_with_interventions(task_name):
    task, model, wrapped, base, source = _compiled_and_wrapped(task_name, "transformer", ReferenceTransformer, seeds=(3, 4), atol=1e-4)
    c = model.config
    moved = 0
    for layer in range(c.n_layers):
        for head in range(c.n_heads):
            cols = slice(head * c.d_head, (head + 1) * c.d_head)
            for j in (2, task.max_len - 2):
                with wrapped.trace(source):
                    src_z = wrapped.attn[layer].out.input[:, j, cols].save()
                with wrapped.trace(base):
                    wrapped.attn[layer].out.input[:, j, cols] = src_z
                    theirs = wrapped.output.save()
                name = f"L{layer}.attn.head{head}"
                src_cache = model.run(source, cache=[name]).cache[name]
                ours = model.run(base, interventions={name: patch(src_cache, positions=j)}).logits
                assert torch.allclose(ours, theirs, atol=1e-3)
                assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
                moved += int((ours.argmax(-1) != model(base).argmax(-1)).any())
    assert moved > 0, "no head patch changed any output: the check would be vacuous"
