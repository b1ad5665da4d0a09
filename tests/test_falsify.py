"""``zoo falsify`` (evaluation.falsify): finds, shrinks, saves and reruns the smallest violating case."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation import falsify as F
from methods.finding import AlignedVariable, Alignment
from zoo.cli import main

QUICK = dict(max_nodes=2, max_len=3, primitives=("Map", "Aggregate[all]"), max_examples=200, max_seconds=60)
CHEAP = {"--max-nodes": "2", "--max-len": "3", "--primitive": "Aggregate[all]"}


def whole_last_site(model, task, *, seed=0, budget=None):
    """A plug-in method: the output variable lives in the whole of the model's last site."""
    site = model.sites[-1]
    return Alignment({task.output.name: AlignedVariable(site.name, np.eye(site.width))}, "whole_last_site")


def whole_first_site(model, task, *, seed=0, budget=None):
    """A plug-in method with a wrong claim: the output variable lives in the whole of the first
    site (it does not: the inputs there feed every later position, not only the output at t)."""
    site = model.sites[0]
    return Alignment({task.output.name: AlignedVariable(site.name, np.eye(site.width))}, "whole_first_site")


def crashes_on_recurrent(model, task, *, seed=0, budget=None):
    """A plug-in method with a bug: it raises on any model with a recurrent site."""
    if any(s.recurrent for s in model.sites):
        raise RuntimeError("recurrent sites are not supported")
    return whole_last_site(model, task)


def test_search_arguments_are_checked_before_any_work():
    with pytest.raises(ValueError, match="unknown property 'faithful'"):
        F.Search("probes", "faithful")
    with pytest.raises(ValueError, match="unknown method 'probe'"):
        F.Search("probe")
    with pytest.raises(ValueError, match="unknown architecture 'lstm'"):
        F.Search("probes", archs=("lstm",))
    with pytest.raises(ValueError, match="at least two archs"):
        F.Search("probes", "transfer", archs=("rnn",))
    with pytest.raises(ValueError, match="unknown kind"):
        F.Search("probes", kinds=("trained",))


def test_a_patch_violation_is_found_shrunk_saved_and_rerun(tmp_path, capsys):
    """Patching a whole first site at j moves what every later aggregate reads, not the output
    at j alone: the smallest case is an aggregate over the tokens, patched at the last of three
    positions (at the first, the aggregate holds the patched token only and agrees)."""
    out = tmp_path / "case"
    args = ["falsify", "tests.test_falsify:whole_first_site", "--property", "patch", "--arch", "rnn", "--max-seconds", "60", "--out", str(out)]
    assert main(args + [a for k, v in CHEAP.items() for a in (k, v)]) == 1
    printed = capsys.readouterr()
    assert "<- output" in printed.out and "family: rnn (compiled)" in printed.out and "input: base   BOS" in printed.out
    assert f"rerun: zoo falsify --rerun {out}" in printed.out and "violation at case" in printed.err
    search, case, record = F.load_case(out)
    assert record["outcome"]["kind"] == "patch" and (out / record["models"]["rnn"] / "weights.safetensors").is_file()
    assert case.intervention[0].shape[1] == 3 and case.intervention[2] == 2
    assert case.task.program.output.op == "Aggregate" and len(case.task.program) <= 3
    assert main(["falsify", "--rerun", str(out)]) == 1
    assert "reproduced: the saved case was a violation (patch)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["transformer", "rnn", "ssm"])
def test_the_patch_violation_shrinks_to_the_same_case_in_every_family(arch):
    search = F.Search("tests.test_falsify:whole_first_site", "patch", archs=(arch,), seed=3, **QUICK)
    result = F.falsify(search, progress=lambda line: None)
    assert result.finished and result.outcome.kind == "patch"
    assert result.case.intervention[0].shape[1] == 3 and result.case.task.program.output.op == "Aggregate"


def test_a_correct_claim_is_not_falsified():
    """Nothing reads a model's last site but the readout: the output does live in all of it."""
    search = F.Search("tests.test_falsify:whole_last_site", "patch", **{**QUICK, "max_examples": 12})
    result = F.falsify(search, progress=lambda line: None)
    assert result.case is None and result.tried == 12


def test_a_method_that_raises_is_a_violation_and_the_same_seed_finds_the_same_case():
    search = F.Search("tests.test_falsify:crashes_on_recurrent", "score", threshold=0.0, archs=("transformer", "rnn"), seed=7, **QUICK)  # no score is below 0
    a, b = (F.falsify(search, progress=lambda line: None) for _ in range(2))
    assert a.outcome.kind == "raised RuntimeError" and a.case.archs == ("rnn",)
    assert "recurrent sites are not supported" in a.outcome.why
    assert a.case.spec == b.case.spec and a.outcome.why == b.outcome.why


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["falsify", "probes", "--property", "faithful"]) == 2
    assert main(["falsify"]) == 2
    assert main(["falsify", "--rerun", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("zoo: error: ") for line in err)
    assert "unknown property 'faithful'" in err[0] and "needs a METHOD" in err[1] and "case.json is missing" in err[2]
