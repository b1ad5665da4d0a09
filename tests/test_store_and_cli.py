"""Saving and loading models, corrupt files, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import tasks
import zoo
from zoo import store
from zoo.cli import main


@pytest.mark.parametrize("family", zoo.FAMILIES)
def test_saved_model_loads_with_identical_predictions_and_ground_truth(tmp_path, family):
    model = zoo.compile("induction", family)
    model.save(tmp_path / "m")
    back = store.load(tmp_path / "m")
    tokens = torch.as_tensor(tasks.get("induction").sample(64, seed=0).tokens)
    assert torch.equal(model(tokens), back(tokens))
    assert back.meta["task"] == "induction" and back.family == family
    for name, loc in model.ground_truth.variables.items():
        assert loc.site == back.ground_truth.variables[name].site
        assert np.array_equal(loc.basis, back.ground_truth.variables[name].basis)
    assert back.ground_truth.circuit == model.ground_truth.circuit


def test_no_pickle_in_a_model_directory(tmp_path):
    zoo.compile("parity", "rnn").save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "ground_truth.json", "weights.safetensors"]
    json.loads((tmp_path / "config.json").read_text())


def test_corrupt_weights_are_reported_with_the_file_and_the_fix(tmp_path):
    zoo.compile("parity", "transformer").save(tmp_path)
    data = bytearray((tmp_path / "weights.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(store.ModelFileError, match=r"corrupt model file .*weights\.safetensors.*re-create"):
        store.load(tmp_path)


def test_missing_and_mismatched_files_are_reported(tmp_path):
    with pytest.raises(store.ModelFileError, match="config.json is missing"):
        store.load(tmp_path)
    zoo.compile("parity", "ssm").save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["d_model"] = config["config"].get("d_model", 4) + 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(store.ModelFileError, match="does not match its config|has shape"):
        store.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(store.ModelFileError, match="not valid JSON"):
        store.load(tmp_path)


def test_cli_tasks_lists_every_task_and_prints_a_program(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in tasks.names())
    assert main(["tasks", "sort"]) == 0
    assert "count_le0" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_exit_code_2():
    for args in (["tasks", "partiy"], ["compile", "parity", "--arch", "lstm"], ["check", "/nonexistent/model"]):
        proc = subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True)
        assert proc.returncode == 2, args
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("zoo: error:"), proc.stderr
        assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "tasks", "partiy"], capture_output=True, text=True)
    assert "did you mean parity" in proc.stderr


def test_cli_compile_then_check_round_trip(tmp_path, capsys):
    assert main(["compile", "histogram", "--arch", "rnn", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "histogram" in out and "L0.hidden" in out and "parameters" in out
    assert main(["check", str(tmp_path), "-n", "64"]) == 0
    assert "OK" in capsys.readouterr().out


def test_cli_compile_refusal_names_the_primitive(capsys):
    assert main(["compile", "modular_addition", "--arch", "transformer", "--max-len", "20000"]) == 2
    assert "Aggregate(all, sum)" in capsys.readouterr().err
