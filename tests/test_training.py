"""Trained models: determinism, store round trip, model cards, planting, the zoo store, DDP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tasks
from zoo import store
from zoo.training import alignment, lightning_module, strict, train, wiring
from zoo.training.build import build, jobs, largest_first, parse_shard, shard_jobs
from zoo.training.card import format_card
from zoo.training.cli import main as train_cli
from zoo.training.train import build_model

TINY = dict(d_model=16, d_mlp=16, n_heads=1, d_head=4)


def _tiny(seed=0, steps=5, plant=True, eval_every=0):
    return train("shift", "transformer", plant=plant, seed=seed, max_steps=steps, eval_every=eval_every, batch_size=16, **TINY)


def test_same_seed_gives_identical_weights():
    a, b, c = _tiny(0), _tiny(0), _tiny(1)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_same_seed_gives_identical_weights_with_held_out_checks_every_step():
    # held-out checks every step (whose IIA, once measured, steers the variable draws; the draws
    # themselves: test_variable_draws_follow_the_weights_and_the_seed)
    a, b = _tiny(0, steps=12, eval_every=1), _tiny(0, steps=12, eval_every=1)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_the_learning_rate_is_the_familys_unless_given_and_goes_into_the_card():
    from zoo.training.train import LEARNING_RATE

    default = _tiny(0, steps=3)
    same = train("shift", "transformer", seed=0, max_steps=3, eval_every=0, batch_size=16, lr=LEARNING_RATE["transformer"], **TINY)
    other = train("shift", "transformer", seed=0, max_steps=3, eval_every=0, batch_size=16, lr=LEARNING_RATE["transformer"] / 2, **TINY)
    for k, v in default.state_dict().items():
        assert torch.equal(v, same.state_dict()[k]), k
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in default.state_dict().items())
    assert default.meta["card"]["optimiser"] == {"lr": LEARNING_RATE["transformer"], "batch_size": 16}
    assert default.meta["card"]["wired"] == []  # only WIRED_PAIRS wire anything
    assert other.meta["card"]["optimiser"]["lr"] == LEARNING_RATE["transformer"] / 2


def test_a_pair_with_its_own_learning_rate_trains_at_it():
    from zoo.training.train import LEARNING_RATE, PAIR_LEARNING_RATE, default_lr

    (task, arch), lr = next(iter(PAIR_LEARNING_RATE.items()))
    assert lr != LEARNING_RATE[arch] and default_lr(task, arch) == lr
    assert all(default_lr(t, arch) == LEARNING_RATE[arch] for t in tasks.names() if (t, arch) not in PAIR_LEARNING_RATE)
    model = train(task, arch, seed=0, max_steps=1, eval_every=0, batch_size=8)
    assert model.meta["card"]["optimiser"]["lr"] == lr


def test_a_pair_with_its_own_config_trains_with_it_unless_the_caller_sizes_it():
    (task, arch), fields = next(iter(alignment.PAIR_CONFIG.items()))
    rule = {k: v for t in tasks.names() if (t, arch) not in alignment.PAIR_CONFIG for k, v in alignment.plan(tasks.get(t), arch).config.items() if k in fields}
    assert rule and all(rule[k] != v for k, v in fields.items())  # the rule gives every other task in the family another value
    assert all(alignment.plan(tasks.get(task), arch).config[k] == v for k, v in fields.items())
    assert all(alignment.plan(tasks.get(task), arch, **rule).config[k] == rule[k] for k in fields)
    model = train(task, arch, seed=0, max_steps=1, eval_every=0, batch_size=8)
    assert all(model.meta["card"]["config"][k] == v for k, v in fields.items())


def test_variable_draws_follow_the_weights_and_the_seed():
    from zoo.training.datamodule import make_batch

    task = tasks.get("parity")
    names = list(task.program.names)
    only_last = [0.0] * (len(names) - 1) + [1.0]
    assert {int(k) for s in range(5) for k in make_batch(task, 8, s, names, only_last)["variable"]} == {len(names) - 1}
    assert len(set(make_batch(task, 64, 0, names)["variable"].tolist())) == len(names)  # uniform: every one drawn
    a, b = make_batch(task, 8, 7, names, [1, 2, 3, 4]), make_batch(task, 8, 7, names, [1, 2, 3, 4])
    for key in ("variable", "position", "location", "base", "source", "cf_targets", "iit_mask"):
        assert np.array_equal(a[key], b[key]), key


def test_loaded_model_predicts_bit_identically_and_keeps_card_and_ground_truth(tmp_path):
    model = _tiny()
    model.save(tmp_path / "m")
    back = store.load(tmp_path / "m")
    tokens = torch.as_tensor(tasks.get("shift").sample(128, seed=3).tokens)
    assert torch.equal(model(tokens), back(tokens))
    assert back.meta["kind"] == "trained" and back.meta["planted"] is True
    card = back.meta["card"]
    for key in ("config", "seed", "steps", "wall_seconds", "heldout_accuracy", "iia"):
        assert key in card
    assert card["steps"] == 5 and set(card["iia"]) == set(tasks.get("shift").program.names)
    assert set(back.ground_truth.variables) == set(model.ground_truth.variables)
    for name, loc in model.ground_truth.variables.items():
        assert np.array_equal(loc.basis, back.ground_truth.variables[name].basis) and loc.lag == 0


def test_the_card_measures_how_far_the_strict_claim_holds():
    from zoo.training.card import strict_accuracy
    from zoo.training.datamodule import TaskDataModule
    from zoo import verify

    model = train("shift", "rnn", seed=0, max_steps=300)
    card = model.meta["card"]
    plan = alignment.plan(tasks.get("shift"), "rnn")
    model_sites = strict.strict_sites(plan, model)
    assert set(card["strict"]) == set(model_sites) and card["min_strict"] == min(card["strict"].values())
    task, data = tasks.get("shift"), TaskDataModule(tasks.get("shift"), seed=0)
    width = model.config.hidden_size
    nothing = strict_accuracy(model, task, data, {"L0.hidden": np.zeros(width, dtype=bool)})
    assert nothing["L0.hidden"] == verify.accuracy(model, task, data.heldout(512))  # nothing patched: the clean accuracy
    everything = strict_accuracy(model, task, data, {"L0.hidden": np.ones(width, dtype=bool)})
    assert everything["L0.hidden"] < 0.5  # the whole last layer from another input: the answers go with it


def test_a_trained_model_without_its_card_is_refused(tmp_path):
    _tiny().save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["meta"]["card"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(store.ModelFileError, match="card is missing"):
        store.load(tmp_path)


def test_unplanted_model_has_no_ground_truth(tmp_path):
    model = _tiny(plant=False)
    assert model.ground_truth is None and model.meta["card"]["planted"] is False and model.meta["card"]["iia"] == {}
    model.save(tmp_path)
    assert not (tmp_path / "ground_truth.json").exists()
    assert store.load(tmp_path).ground_truth is None


@pytest.mark.parametrize("family", ["transformer", "rnn", "ssm"])
def test_alignment_blocks_are_disjoint_and_respect_dependency_order(family):
    task = tasks.get("parity")
    plan = alignment.plan(task, family)
    model = build_model(task, family, 0, plan)
    gt = alignment.ground_truth(plan, model)
    order = [s.name for s in model.site_list()]
    for v in task.program:
        for u in v.inputs:  # an input is written no later than the variable that reads it
            assert order.index(gt.variables[u.name].site) <= order.index(gt.variables[v.name].site)
    by_site = {}
    for name, (site, block) in plan.blocks.items():  # (the tokens' location also spans the token Maps': test_the_tokens_location_spans_the_maps_...)
        key = "stream" if family != "rnn" else site
        assert not (set(block) & by_site.get(key, set())), name
        by_site.setdefault(key, set()).update(block)


@pytest.mark.parametrize("family", ["transformer", "ssm"])
def test_strict_term_covers_idle_blocks_but_never_a_live_one(family):
    task = tasks.get("sort")
    plan = alignment.plan(task, family)
    model = build_model(task, family, 0, plan)
    order = [s.name for s in model.site_list()]
    assert "tokens" in strict.idle_variables(plan, model, "L2.resid")  # the le_k Maps are written by then
    assert "sorted_value" in strict.idle_variables(plan, model, "L0.resid")  # not written yet
    for site in strict.strict_sites(plan, model):
        if model.site(site).kind != "resid":  # component outputs: test_strict_term_patches_a_component_outside_what_it_computes
            continue
        patched = set(np.flatnonzero(strict.free_basis(plan, model, site).sum(0)))
        for v in task.program:
            block = set(plan.blocks[v.name][1])
            written = order.index(plan.blocks[v.name][0]) <= order.index(site)
            later_reader = any(order.index(plan.blocks[w.name][0]) > order.index(site) for w in task.program if v in w.inputs)
            if written and (v is task.program.output or later_reader):  # in use at this point: never patched by the strict term
                assert not (block & patched), (site, v.name)


@pytest.mark.parametrize("family", ["transformer", "ssm"])
def test_strict_term_patches_a_component_outside_what_it_computes(family):
    task = tasks.get("sort")
    plan = alignment.plan(task, family)
    model = build_model(task, family, 0, plan)
    writers = strict.writers(plan, model)
    comps = [s.name for s in model.site_list() if s.kind in strict.COMPONENT_KINDS]
    for c in comps:
        patched = set(np.flatnonzero(strict.free_basis(plan, model, c).sum(0)))
        mine = {v for v, cs in writers.items() if c in cs}
        for v, (site, idx) in plan.blocks.items():
            if v in mine or (v == plan.output and comps.index(c) > max(comps.index(w) for w in writers[v])):
                assert not (set(idx) & patched), (c, v)  # its own variables (and the output, decoded further) are kept
            else:
                assert set(idx) <= patched, (c, v)  # everything else it might write is patched
    first_mixer = "L0.attn.head0" if family == "transformer" else "L0.mixer"
    assert not any(first_mixer in cs for cs in writers.values())  # sort computes nothing by mixing in layer 0...
    assert strict.free_basis(plan, model, first_mixer).shape[0] == model.site(first_mixer).width  # ...so it is patched whole
    # a per-position Map is computed by the MLP before it, never by the sequence mixer
    assert all(model.site(c).kind == "mlp" for c in writers["le0"]) and all(model.site(c).kind != "mlp" for c in writers["count_le0"])


def test_rnn_relays_carry_a_variable_to_a_reader_layers_above_and_are_never_patched():
    task = tasks.get("sort")
    plan = alignment.plan(task, "rnn")
    model = build_model(task, "rnn", 0, plan)
    # rank (layer 3) reads indices (layer 0): layers 1 and 2 carry it; the le_k Maps (layer 2) read tokens (embed)
    assert {site for (v, site) in plan.relays if v == "indices"} == {"L1.hidden", "L2.hidden"}
    assert {site for (v, site) in plan.relays if v == "tokens"} == {"L0.hidden", "L1.hidden"}
    for (v, site), idx in plan.relays.items():
        assert len(idx) == len(plan.blocks[v][1])
        assert not set(idx) & set(np.flatnonzero(strict.free_basis(plan, model, site).sum(0)))
    assert {(v, site) for v, site, _ in strict.carriers(plan, model)} == set(plan.relays)
    # first_occurrence: its lookup's memory slots live in layer 1, between the inputs and the gates,
    # and layer 0 (indices, the token's relay) feeds them: both dense and not strict-patched
    plan = alignment.plan(tasks.get("first_occurrence"), "rnn")
    model = build_model(tasks.get("first_occurrence"), "rnn", 0, plan)
    assert alignment.scratch_layers(plan) == {0, 1} and plan.blocks["indices"][0] == "L0.hidden"
    for site in ("L0.hidden", "L1.hidden"):
        assert site not in strict.strict_sites(plan, model) and site not in alignment.silent_units(plan)
    assert "L2.hidden" in alignment.silent_units(plan) and "L2.hidden" in strict.strict_sites(plan, model)
    # layer 0's blocks still hold their variables: IIT patches the relay, the ground truth locates indices there
    assert {(v, site) for v, site, _ in strict.carriers(plan, model)} == {("tokens", "L0.hidden")}
    truth = alignment.ground_truth(plan, model)
    assert truth.variables["indices"].site == "L0.hidden" and "L0.hidden" not in truth.site_variables


def test_silent_rnn_units_output_zero_and_get_no_gradient():
    model = train("sort", "rnn", seed=0, max_steps=3, eval_every=0, batch_size=8)
    plan = alignment.plan(tasks.get("sort"), "rnn")
    silent = alignment.silent_units(plan)
    assert silent and all(len(units) for units in silent.values())
    tokens = torch.as_tensor(tasks.get("sort").sample(64, seed=5).tokens)
    cache = model.run(tokens, cache=list(silent)).cache
    for site, units in silent.items():
        k = int(site[1:].split(".")[0])
        w_ih, w_hh, b_ih, b_hh = model.layer_params(k)
        for p in (w_ih, w_hh, b_hh):  # still as silence set them after training steps
            assert torch.equal(p[units], torch.zeros_like(p[units])), site
        assert torch.equal(b_ih[units], torch.full_like(b_ih[units], alignment.SILENT_BIAS)) and alignment.SILENT_BIAS < 0
        assert not cache[site][..., units].any(), site
        used = {i for s, idx in plan.blocks.values() if s == site for i in idx} | {i for (_, s), idx in plan.relays.items() if s == site for i in idx}
        assert not used & set(units)


def test_wired_rnn_counters_read_only_their_inputs_and_stay_wired_through_training():
    task = tasks.get("sort")
    plan = alignment.plan(task, "rnn")
    masks = wiring.counter_masks(task, plan)
    assert ("sort", "rnn") in wiring.WIRED_PAIRS and set(masks) == {3}  # the count_le{k} blocks live in layer 3
    ih, hh = masks[3]
    counter_rows = set()
    for name in wiring.counters(task):
        rows = list(plan.blocks[name][1])
        counter_rows |= set(rows)
        le = plan.inputs[name]
        assert len(le) == 1 and plan.blocks[le[0]][0] == "L2.hidden"
        assert {int(c) for c in np.flatnonzero(ih[rows].any(0))} == set(plan.blocks[le[0]][1])  # its own le_k, no other le_k block nor relay
        assert {int(c) for c in np.flatnonzero(hh[rows].any(0))} == set(rows)
    others = [i for i in range(ih.shape[0]) if i not in counter_rows]
    assert ih[others].all() and hh[others].all()  # every other unit stays dense
    assert wiring.counter_masks(tasks.get("count"), alignment.plan(tasks.get("count"), "rnn")) == {}  # only the listed pairs

    model = train("sort", "rnn", seed=0, max_steps=3, eval_every=0, batch_size=8)
    assert model.meta["card"]["wired"] == ["count_le0", "count_le1", "count_le2", "count_le3"]
    assert "count_le3" in format_card(model.meta).splitlines()[-2]
    before = build_model(task, "rnn", 0, plan)
    w_ih, w_hh, _, _ = model.layer_params(3)
    assert torch.equal(w_ih[torch.as_tensor(~ih)], torch.zeros(int((~ih).sum()))) and torch.equal(w_hh[torch.as_tensor(~hh)], torch.zeros(int((~hh).sum())))
    rows = sorted(counter_rows)
    assert torch.allclose(w_hh[rows, rows], torch.full((len(rows),), wiring.INTEGRATOR_DIAGONAL), atol=0.05)  # three steps from the integrator start
    wired_ih = torch.as_tensor(ih[rows])  # each counter's weights from its own le_k block
    assert not torch.equal(w_ih[rows][wired_ih], before.layer_params(3)[0][rows][wired_ih])  # train


def test_streams_hold_a_map_of_the_token_in_their_embedding():
    task = tasks.get("modular_addition")  # digit = Map(tokens), total = Sum(digit), sum_mod = Map(total)
    for family in ("transformer", "ssm"):  # the embedding computes digit: layer 0 sums it
        plan = alignment.plan(task, family)
        assert plan.blocks["digit"][0] == "L0.resid" and plan.blocks["total"][0] in ("L0.resid_mid", "L0.mixer")
    plan = alignment.plan(task, "rnn")  # the RNN keeps its compiled layout: layer 0 computes the Map
    assert plan.blocks["digit"][0] == "L0.hidden" and plan.config["num_layers"] == 3


def test_a_sawtooth_of_a_count_is_decoded_by_two_mlps_when_it_has_many_pieces():
    program = {t: tasks.get(t).program for t in ("parity", "modular_addition", "majority")}
    for name, mod in (("parity", 2), ("modular_addition", 5)):  # a count mod k changes at every step of the count
        v = program[name].output
        assert alignment.sawtooth_pieces(v) == v.inputs[0].value_set.size - 1 and v.table[mod] == v.table[0]
    assert alignment.sawtooth_pieces(program["majority"].output) == 0  # a threshold is monotone: not a sawtooth
    for task_name, family, two in (("parity", "ssm", True), ("modular_addition", "ssm", True), ("modular_addition", "transformer", True),
                                   ("parity", "transformer", False), ("majority", "ssm", False)):
        task = tasks.get(task_name)
        pieces = max(alignment.sawtooth_pieces(v) for v in task.program)
        assert two == (pieces > alignment.TWO_MLP_PIECES[family]), (task_name, family)
        plan = alignment.plan(task, family)
        model = build_model(task, family, 0, plan)
        out, count = task.program.output.name, task.program.output.inputs[0].name
        mlps = strict.writers(plan, model)[out]
        assert all(model.site(c).kind == "mlp" for c in mlps) and len(mlps) == (2 if two else 1), (task_name, family, mlps)
        layer = int(plan.blocks[count][0].split(".")[0][1:])
        assert plan.blocks[out][0] == f"L{layer + (2 if two else 1)}.resid" and plan.config["n_layers"] == layer + (2 if two else 1)
        if two:  # the sequence mixer between the two MLPs computes nothing: the strict term patches it whole
            mixers = [s.name for s in model.site_list() if s.layer == layer + 1 and s.kind in ("mixer", "head")]
            assert mixers and all(strict.free_basis(plan, model, m).shape[0] == model.site(m).width for m in mixers), mixers


def test_iit_batches_mix_interventions_no_ops_whole_sequences_and_carriers():
    from zoo.training.datamodule import make_batch

    task = tasks.get("sort")
    plan = alignment.plan(task, "rnn")
    model = build_model(task, "rnn", 0, plan)
    names = list(task.program.names)
    carriers = {n: sum(v == n for v, _, _ in strict.carriers(plan, model)) for n in names}
    b = make_batch(task, 512, 3, names, carriers=carriers)
    vb, vs = task.run(b["base"]), task.run(b["source"])
    rows = np.arange(512)
    kinds = {"noop": 0, "whole": 0, "carried": 0, "intervention": 0}
    for i in rows:
        name = names[b["variable"][i]]
        agree = vb[name][i] == vs[name][i]
        if b["location"][i]:  # a carrier: patched where base and source agree, the outputs stay the base's
            kinds["carried"] += 1
            assert np.array_equal(b["iit_mask"][i], agree) and np.array_equal(b["cf_targets"][i], b["targets"][i])
        elif task.program[name].per_position and b["iit_mask"][i][1:].all() and not agree[1:].all():  # replaced at every position
            whole = np.ones((1, task.max_len), dtype=bool)
            whole[0, 0] = False
            replaced = task.replaced(b["base"][i:i + 1], b["source"][i:i + 1], name, whole).outputs[0]
            if (~agree[1:]).sum() == 1:  # differing at one position only, it may as well be an intervention there
                cf = task.counterfactual(b["base"][i:i + 1], b["source"][i:i + 1], name, b["position"][i:i + 1]).outputs[0]
                assert np.array_equal(b["cf_targets"][i], replaced) or np.array_equal(b["cf_targets"][i], cf)
                continue
            kinds["whole"] += 1
            assert np.array_equal(b["cf_targets"][i], replaced)
        elif agree[b["position"][i]]:  # a no-op: every output stays
            kinds["noop"] += 1
            assert np.array_equal(b["cf_targets"][i], b["targets"][i])
        else:
            kinds["intervention"] += 1
            cf = task.counterfactual(b["base"][i:i + 1], b["source"][i:i + 1], name, b["position"][i:i + 1])
            assert np.array_equal(b["cf_targets"][i], cf.outputs[0])
            assert np.array_equal(b["iit_mask"][i], agree | (np.arange(task.max_len) == b["position"][i]))
    assert all(kinds.values()), kinds


@pytest.mark.parametrize("n_same", [3, 30, 300])
def test_iit_loss_weighs_the_outputs_an_intervention_changes_however_few(n_same):
    from zoo.training.iit import ce, iit_ce

    share = 0.5

    targets = torch.zeros(1, n_same + 2, dtype=torch.long)
    targets[0, 0] = tasks.IGNORE  # not counted
    cf = targets.clone()
    cf[0, 1] = 1  # the one output the intervention changes; the model keeps the base's (class 0)
    logits = torch.zeros(1, n_same + 2, 2)
    logits[..., 0] = 4.0
    wrong = ce(logits[:, 1:2], cf[:, 1:2])
    assert iit_ce(logits, cf, targets, share) >= share * wrong  # not diluted by the outputs it leaves alone
    assert ce(logits, cf) < share * wrong  # as a plain mean is, and as the RNN's share (None) keeps it
    assert torch.equal(iit_ce(logits, cf, targets, None), ce(logits, cf))
    assert torch.isclose(iit_ce(logits, targets, targets, share), ce(logits, targets))  # nothing changed: the plain mean


def test_iit_masks_patch_each_examples_own_block_where_its_batch_says():
    from zoo.training.datamodule import make_batch, to_tensors
    from zoo.training.iit import iit_masks

    task = tasks.get("sort")
    plan = alignment.plan(task, "rnn")
    model = build_model(task, "rnn", 0, plan)
    gt = alignment.ground_truth(plan, model)
    names = list(task.program.names)
    locations = {n: [(gt.variables[n].site, gt.variables[n].tensor())] for n in names}
    for n, site, basis in strict.carriers(plan, model):
        locations[n].append((site, torch.as_tensor(basis)))
    carriers = {n: len(v) - 1 for n, v in locations.items()}
    batch = to_tensors(make_batch(task, 64, 5, names, carriers=carriers))
    masks = iit_masks(locations, names, batch)
    widths = {s.name: s.width for s in model.site_list()}
    for i in range(64):
        name = names[int(batch["variable"][i])]
        site, basis = locations[name][int(batch["location"][i])]
        for other, m in masks.items():
            expected = torch.zeros(m.shape[1:])
            if other == site:
                expected = batch["iit_mask"][i][:, None].float() * (basis.sum(0) != 0).float()[None, :]
            assert torch.equal(m[i], expected), (i, name, other)
        assert widths[site] == masks[site].shape[-1]
    assert int(batch["location"].gt(0).sum()) > 0  # carriers were drawn


def test_strict_masks_patch_a_seeded_random_subset_of_sites_on_their_free_coordinates():
    from zoo.training.iit import strict_masks

    task = tasks.get("sort")
    plan = alignment.plan(task, "ssm")
    model = build_model(task, "ssm", 0, plan)
    free = {s: torch.as_tensor(strict.free_basis(plan, model, s).sum(0) > 0) for s in strict.strict_sites(plan, model)}
    draws = [strict_masks(free, (8, task.max_len), torch.Generator().manual_seed(k)) for k in range(40)]
    for masks in draws:
        assert masks  # at least one site each step
        for site, m in masks.items():  # every example, every position, the free coordinates only
            assert torch.equal(m, free[site].float().expand(8, task.max_len, -1))
    sizes = [len(m) for m in draws]
    assert min(sizes) < len(free) and max(sizes) > 1  # a subset, not always everything, not always one site
    assert {s for m in draws for s in m} == set(free)  # every site gets trained
    again = strict_masks(free, (8, task.max_len), torch.Generator().manual_seed(3))
    assert sorted(again) == sorted(draws[3])


def test_strict_focus_patches_a_lagging_site_alone_in_half_the_examples():
    from zoo.training.iit import strict_masks

    task = tasks.get("sort")
    plan = alignment.plan(task, "ssm")
    model = build_model(task, "ssm", 0, plan)
    free = {s: torch.as_tensor(strict.free_basis(plan, model, s).sum(0) > 0) for s in strict.strict_sites(plan, model)}
    lagging = sorted(free)[1:3]
    B, T = 256, task.max_len
    for k in range(10):
        plain = strict_masks(free, (B, T), torch.Generator().manual_seed(k))
        masks = strict_masks(free, (B, T), torch.Generator().manual_seed(k), focus=lagging)
        rows = {s: m[:, 0].amax(-1) > 0 for s, m in masks.items()}  # [B]: which examples patch the site
        for s, m in masks.items():  # a patched example patches the site's free coordinates at every position
            assert torch.equal(m[rows[s]], free[s].float().expand(int(rows[s].sum()), T, -1))
        patched = [frozenset(s for s in masks if rows[s][b]) for b in range(B)]
        # each example patches the random subset drawn without focus, or one lagging site alone
        assert all(p == set(plain) or (len(p) == 1 and set(p) <= set(lagging)) for p in patched)
        alone = [p for p in patched if p != set(plain)]
        assert 0.3 * B < len(alone) < 0.7 * B
        assert {s for p in alone for s in p} == set(lagging)  # each lagging site gets its examples


def _scripted_module(**kwargs):
    """A planted shift/rnn ZooLightningModule on a stand-in trainer (checks every 50 steps), for
    tests that script what the checks measure; the trainer records what is broadcast."""
    from types import SimpleNamespace

    from zoo.training.lightning_module import ZooLightningModule

    task = tasks.get("shift")
    plan = alignment.plan(task, "rnn")
    model = build_model(task, "rnn", 0, plan)
    model.ground_truth = alignment.ground_truth(plan, model)
    names = list(task.program.names)
    module = ZooLightningModule(model, task, planted=True, locations={n: [] for n in names}, lr=3e-3, eval_every=50, **kwargs)
    broadcasts = []
    trainer = SimpleNamespace(global_step=0, should_stop=False, broadcasts=broadcasts, progress_bar_callback=None, optimizers=[SimpleNamespace(param_groups=[{"lr": 3e-3}])],
                              strategy=SimpleNamespace(broadcast=lambda obj, src=0: broadcasts.append(obj) or obj),
                              datamodule=SimpleNamespace(stream=SimpleNamespace(variables=names, weights=None)))
    module._trainer = trainer
    return module, trainer, names


@pytest.mark.parametrize("reach, lag_until, expected_stop", [(100, None, 100), (100, 200, 200), (100, 10**6, 1100), (1500, 2000, 2000), (1500, 10**6, 3000)])
def test_a_run_waits_for_lagging_strict_sites_a_bounded_number_of_steps(monkeypatch, reach, lag_until, expected_stop):
    from zoo.training import card

    sites = {s: torch.ones(4, dtype=torch.bool) for s in ("L0.hidden", "L1.hidden")}
    module, trainer, names = _scripted_module(strict=sites)
    # targets reached from step `reach` on; L1.hidden's strict accuracy lags until step lag_until;
    # the run waits until step reach + max(reach, STRICT_PATIENCE) at most
    monkeypatch.setattr(card, "measure", lambda *a, **k: (1.0 if trainer.global_step >= reach else 0.5, {n: 1.0 for n in names} if trainer.global_step >= reach else {}))

    def lags():
        return lag_until is not None and trainer.global_step < lag_until

    monkeypatch.setattr(card, "strict_accuracy", lambda *a, **k: {"L0.hidden": 1.0, "L1.hidden": 0.5 if lags() else 1.0})
    for step in range(50, 5000, 50):
        trainer.global_step = step
        module.on_train_batch_end(None, None, 0)
        if step >= reach:  # measured at every check once the targets hold
            assert module.focus == (("L1.hidden",) if lags() else ())
        if trainer.should_stop:
            break
    assert step == expected_stop


@pytest.mark.parametrize("acc_from, give_up_s, expected_stop, below", [
    (10_000, 0.0, 50, 0.5),  # time is up and accuracy is far below target: the first check stops the run
    (10_000, 0.0, None, 0.92),  # ... but a run within reach of it keeps its time
    (50, 0.0, None, 0.5),  # behaviour learnt, IIA lagging: the run keeps its time (max_time ends it)
    (10_000, 3600.0, None, 0.5),  # accuracy below target but time not up yet
    ("once", 0.0, None, 0.5),  # on target at one check, below at the next ones: the behaviour was learnt
])
def test_a_run_gives_up_late_only_when_its_accuracy_never_came_near_its_target(acc_from, give_up_s, expected_stop, below):
    from zoo.training import card

    module, trainer, names = _scripted_module(give_up_s=give_up_s)
    broadcasts = trainer.broadcasts
    module.on_train_start()
    with pytest.MonkeyPatch.context() as mp:  # IIA never reaches its target: only the time limits can end these runs
        on_target = (lambda step: step == 50) if acc_from == "once" else (lambda step: step >= acc_from)
        mp.setattr(card, "measure", lambda *a, **k: (card.ACCURACY_TARGET if on_target(trainer.global_step) else below, {n: 0.5 for n in names}))
        stop = None
        for step in range(50, 2000, 50):
            trainer.global_step = step
            module.on_train_batch_end(None, None, 0)
            if trainer.should_stop:
                stop = step
                break
    assert stop == expected_stop
    # the time is looked at (and rank 0's answer broadcast) only while accuracy has never come near its target
    assert (broadcasts == []) == (acc_from in (50, "once") or below >= lightning_module.GIVE_UP_BELOW)
    assert all(late == (give_up_s == 0.0) for late in broadcasts)


def test_the_learning_rate_drops_while_accuracy_hovers_near_its_target():
    from zoo.training import card

    module, trainer, names = _scripted_module()
    group = trainer.optimizers[0].param_groups[0]
    near, after = lightning_module.ANNEAL_FROM, lightning_module.ANNEAL_AFTER // 50  # checks every 50 steps
    mid = (near + card.ACCURACY_TARGET) / 2
    accuracies = [0.5, near, 0.5] + [mid] * after + [card.ACCURACY_TARGET, near, 0.5]
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(card, "measure", lambda *a, **k: (accuracies[trainer.global_step // 50 - 1], {n: 0.5 for n in names}))
        for k in range(len(accuracies)):
            trainer.global_step = 50 * (k + 1)
            module.on_train_batch_end(None, None, 0)
            seen.append(group["lr"] / module.lr)
    low = lightning_module.ANNEAL_FACTOR
    # lowered ANNEAL_AFTER steps after the first check near the target (whatever follows), until the first check on it
    assert seen == pytest.approx([1.0] * (after + 1) + [low, low] + [1.0] * 3)


def test_the_tokens_location_spans_the_maps_the_embedding_derives_from_them():
    task = tasks.get("parity")  # is_one = Map(tokens) lives in the embedding beside the token
    for family in ("transformer", "ssm"):
        plan = alignment.plan(task, family)
        model = build_model(task, family, 0, plan)
        gt = alignment.ground_truth(plan, model)
        assert plan.derived == {"tokens": ("is_one",)}
        assert gt.variables["is_one"].site == gt.variables["tokens"].site == "L0.resid"
        cols = set(np.flatnonzero(np.abs(gt.variables["tokens"].basis).sum(0)))
        assert cols == set(plan.blocks["tokens"][1]) | set(plan.blocks["is_one"][1])
        # the token's own block is read by nothing beyond the embedding: the strict term patches it there
        assert set(plan.blocks["tokens"][1]) <= set(np.flatnonzero(strict.free_basis(plan, model, "L0.resid").sum(0)))
    plan = alignment.plan(task, "rnn")  # an RNN keeps the compiled layout: is_one in layer 0
    assert plan.blocks["is_one"][0] == "L0.hidden" and plan.derived == {}


def test_ssm_init_starts_some_channels_as_accumulators():
    from zoo.families import ssm

    model = ssm.from_config(dict(vocab_size=5, n_classes=3, max_len=16, d_model=32, d_inner=64), seed=0)
    blk = model.blocks[0]
    step = torch.nn.functional.softplus(blk.delta_proj.bias)  # the step at a zero input
    decay = torch.exp(-step[:, None] * torch.exp(blk.A_log))  # [E, N]
    assert (decay.min(1).values ** 16 > 0.99).any()  # some channel keeps 99% of its sum over a whole sequence
    assert (decay.max(1).values ** 16 < 0.5).any()  # and others forget within it


def test_planted_training_reaches_its_targets_on_shift_rnn():
    model = train("shift", "rnn", seed=0, max_steps=600)
    card = model.meta["card"]
    assert card["heldout_accuracy"] >= 0.99, card
    assert min(card["iia"].values()) >= 0.95, card
    assert card["reached"]
    # also on the outputs the interventions change (the card's stricter reading)
    assert set(card["iia_changed"]) == set(card["iia"]) and card["min_iia_changed"] >= 0.95, card


def test_build_skips_valid_models_resumes_and_shards(tmp_path):
    kw = dict(root=tmp_path, max_steps=3, eval_every=0, batch_size=8, progress=lambda *_: None)
    first = build(["shift"], ["rnn"], **kw)
    assert [r["status"] for r in first] == ["ok", "ok"]
    (tmp_path / "trained" / "shift-rnn-seed0.partial").mkdir()  # an interrupted job
    assert build(["shift"], ["rnn"], **kw) == []  # everything valid: skipped
    assert not (tmp_path / "trained" / "shift-rnn-seed0.partial").exists()
    (tmp_path / "trained" / "shift-rnn-seed0" / "weights.safetensors").write_bytes(b"junk")
    again = build(["shift"], ["rnn"], **kw)
    assert [(r["kind"], r["status"]) for r in again] == [("trained", "ok")]
    grid = jobs(["a", "b", "c"], ["transformer", "rnn"])
    shards = [shard_jobs(grid, (i, 4)) for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(grid)  # every job in exactly one shard
    for shard in shards:  # a pair's compiled and trained jobs stay together: trained work spreads evenly
        assert sum(kind == "trained" for kind, _, _ in shard) in (1, 2)
        assert {(t, a) for k, t, a in shard if k == "compiled"} == {(t, a) for k, t, a in shard if k == "trained"}
    with pytest.raises(ValueError, match="workers=0"):
        build(["shift"], ["rnn"], root=tmp_path, workers=0)
    with pytest.raises(ValueError, match="max_minutes=0"):
        build(["shift"], ["rnn"], root=tmp_path, max_minutes=0)
    with pytest.raises(ValueError, match="give_up_minutes=-1"):
        build(["shift"], ["rnn"], root=tmp_path, give_up_minutes=-1)
    with pytest.raises(ValueError, match="give_up_minutes=0"):
        train("shift", "rnn", give_up_minutes=0)
    with pytest.raises(ValueError, match="lr=-0.001"):
        train("shift", "rnn", lr=-1e-3)
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(ValueError):
        parse_shard("3/3")


def test_build_with_two_workers_equals_one(tmp_path):
    kw = dict(max_steps=2, eval_every=0, batch_size=8, progress=lambda *_: None, kinds=("trained",))
    one = build(["shift", "parity"], ["rnn"], root=tmp_path / "one", **kw)
    two = build(["shift", "parity"], ["rnn"], root=tmp_path / "two", workers=2, **kw)
    assert len(two) == len(one) == 2
    for name in ("shift-rnn-seed0", "parity-rnn-seed0"):  # the same seeded weights, whichever process trained them
        a, b = (store.load(tmp_path / r / "trained" / name) for r in ("one", "two"))
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_pool_of_workers_takes_the_largest_models_first():
    grid = jobs(["shift", "sort", "parity", "dyck1"], ["transformer", "rnn", "ssm"])
    order = largest_first(grid)
    assert sorted(order) == sorted(grid)
    size = {(t, a): sum(p.numel() for p in build_model(tasks.get(t), a, 0, alignment.plan(tasks.get(t), a)).parameters()) for _, t, a in grid}
    pairs = list(dict.fromkeys((t, a) for _, t, a in order))
    assert [size[p] for p in pairs] == sorted(size.values(), reverse=True)
    for t, a in pairs:  # each pair's compiled job right before its trained one
        i = order.index(("compiled", t, a))
        assert order[i + 1] == ("trained", t, a)


def test_train_cli_prints_the_card_and_saves(tmp_path, capsys):
    train_cli(["train", "shift", "--arch", "rnn", "--max-steps", "3", "--lr", "0.0007", "--out", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert "model card" in out and "held-out accuracy" in out and "lr 0.0007" in out
    card = store.load(tmp_path / "m").meta["card"]
    assert card["steps"] == 3 and card["optimiser"]["lr"] == 0.0007


@pytest.mark.slow
def test_ddp_on_two_cpu_processes():
    model = train("shift", "rnn", seed=0, max_steps=4, eval_every=0, batch_size=8, devices=2, strategy="ddp")
    assert model.meta["card"]["steps"] == 4
    # giving up is rank 0's decision, broadcast: both processes stop at the first check (no hang)
    model = train("shift", "rnn", seed=0, max_steps=40, eval_every=2, batch_size=8, devices=2, strategy="ddp", give_up_minutes=1e-9)
    assert model.meta["card"]["steps"] == 2 and model.meta["card"]["heldout_accuracy"] < 0.99
    assert model.meta["card"]["stopped"] == "gave up"


def test_a_time_limit_alone_sets_no_step_limit(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("zoo.training.train"), "DEFAULT_MAX_STEPS", 5)
    tiny = dict(seed=0, batch_size=8, eval_every=0)
    assert train("shift", "rnn", **tiny).meta["card"]["steps"] == 5  # no limit given: the default step limit
    card = train("shift", "rnn", max_minutes=0.02, **tiny).meta["card"]
    assert card["stopped"] == "max_minutes" and card["steps"] > 5  # a time limit alone: no step limit behind it


def test_the_card_says_why_the_run_stopped():
    tiny = dict(seed=0, batch_size=8)
    card = train("shift", "rnn", max_steps=3, eval_every=0, **tiny).meta["card"]
    assert (card["stopped"], card["steps"]) == ("max_steps", 3)
    card = train("shift", "rnn", max_steps=40, eval_every=2, give_up_minutes=1e-9, **tiny).meta["card"]
    assert (card["stopped"], card["steps"]) == ("gave up", 2) and not card["reached"]
    card = train("shift", "rnn", max_steps=10**6, eval_every=0, max_minutes=0.002, **tiny).meta["card"]
    assert card["stopped"] == "max_minutes" and card["steps"] < 10**6
    card = train("running_max", "transformer", seed=0, max_steps=2000).meta["card"]
    assert card["stopped"] == "targets" and card["reached"] and card["steps"] < 2000
