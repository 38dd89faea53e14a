"""Checkpoints: atomic layout, checksum validation, fallback to the previous checkpoint, pruning,
and exact resume of an interrupted run with the real DfNet4."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest

from _train_helpers import cli_args, read_metrics, subprocess_env, tiny_config
from dfnet4.train import checkpoint as ckpt
from dfnet4.train.loop import Trainer, TrainingInterrupted


def _save(root, step, value, keep=3):
    params = {"layer": {"weight": mx.full((4, 3), float(value))}}
    opt = {"step": mx.array(step, mx.uint64), "layer": {"weight": {"m": mx.zeros((4, 3))}}}
    return ckpt.save(root, step, params, opt, {"epoch": 0, "data_position": {"epoch": 0, "batch": step}}, keep=keep)


def test_save_validate_and_load(tmp_path):
    path = _save(tmp_path, 5, 1.5)
    assert path.name == "step-00000005" and (tmp_path / "latest").read_text().strip() == path.name
    state = ckpt.validate(path)
    assert state["step"] == 5 and set(state["files"]) == {ckpt.WEIGHTS, ckpt.OPTIMIZER}
    params, opt = ckpt.load_arrays(path)
    np.testing.assert_array_equal(np.array(params["layer"]["weight"]), np.full((4, 3), 1.5, np.float32))
    assert opt["step"].item() == 5 and opt["step"].dtype == mx.uint64
    assert not list(tmp_path.glob(".tmp-*"))  # no temp leftovers


@pytest.mark.parametrize("damage", ["truncate_weights", "flip_optimizer_byte", "truncate_state", "delete_weights"])
def test_damaged_latest_falls_back_to_previous(tmp_path, damage, capsys):
    _save(tmp_path, 1, 1.0)
    latest = _save(tmp_path, 2, 2.0)
    if damage == "truncate_weights":
        with open(latest / ckpt.WEIGHTS, "r+b") as f:
            f.truncate(os.path.getsize(latest / ckpt.WEIGHTS) // 2)
    elif damage == "flip_optimizer_byte":
        data = bytearray((latest / ckpt.OPTIMIZER).read_bytes())
        data[-1] ^= 0xFF
        (latest / ckpt.OPTIMIZER).write_bytes(bytes(data))
    elif damage == "truncate_state":
        (latest / ckpt.STATE).write_text((latest / ckpt.STATE).read_text()[:40])
    else:
        (latest / ckpt.WEIGHTS).unlink()
    with pytest.raises(ckpt.CheckpointError):
        ckpt.validate(latest)
    found = ckpt.find_latest_valid(tmp_path)
    assert found is not None and found[0].name == "step-00000001"
    assert "ignoring invalid checkpoint" in capsys.readouterr().out


def test_killed_writer_leaves_only_ignorable_temp_dirs(tmp_path):
    _save(tmp_path, 1, 1.0)
    (tmp_path / ".tmp-step-00000002-99999").mkdir()  # a writer killed before its rename
    (tmp_path / ".tmp-step-00000002-99999" / ckpt.WEIGHTS).write_bytes(b"partial")
    assert [p.name for p in ckpt.candidates(tmp_path)] == ["step-00000001"]
    _save(tmp_path, 3, 3.0)  # the next save cleans it up
    assert not (tmp_path / ".tmp-step-00000002-99999").exists()


def test_keep_last_n_and_resolve(tmp_path):
    for s in range(1, 6):
        _save(tmp_path / "run" / "checkpoints", s, s, keep=2)
    names = [p.name for p in ckpt.candidates(tmp_path / "run" / "checkpoints")]
    assert names == ["step-00000005", "step-00000004"]
    assert ckpt.resolve(tmp_path / "run")[0].name == "step-00000005"  # a run dir works too
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.resolve(tmp_path / "nothing")
    with pytest.raises(ckpt.CheckpointError, match="no valid checkpoint"):
        ckpt.resolve(tmp_path)


def test_interrupted_run_resumes_exactly_and_skips_a_truncated_checkpoint(tmp_path, tmp_path_factory):
    """Uninterrupted 10 steps vs: stop after step 3 (checkpoints at 2 and 3), truncate checkpoint 3
    as if killed mid-write, resume -> continues from step 2 and reproduces steps 3..10 bit for bit
    (the mixer is a pure function of (seed, epoch, index); weights, optimizer and data position are
    restored exactly). 10 steps of 8 batches per epoch also cross an epoch boundary after resuming."""
    data = tmp_path_factory.getbasetemp() / "builtin"
    full = Trainer(tiny_config(tmp_path / "full", data, steps=10, validate_at_start=False), progress=False).run()

    cfg = tiny_config(tmp_path / "cut", data, steps=10, checkpoint_every=2, validate_at_start=False)
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(cfg, progress=False, interrupt_at_step=3).run()
    assert info.value.checkpoint.name == "step-00000003"
    weights = tmp_path / "cut" / "checkpoints" / "step-00000003" / ckpt.WEIGHTS
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 100)

    resumed = Trainer(tiny_config(tmp_path / "cut", data, steps=10, checkpoint_every=2, validate_at_start=False),
                      resume=True, progress=False).run()
    assert resumed["step"] == 10 and len(resumed["losses"]) == 8  # steps 3..10
    assert resumed["losses"] == full["losses"][2:]
    steps = [r["step"] for r in read_metrics(tmp_path / "cut")]
    assert steps == list(range(1, 11))  # the log was rolled back to the checkpoint, no duplicates


def test_resume_refuses_to_overwrite_and_sigterm_saves(tmp_path, tmp_path_factory):
    """A real SIGTERM to a running dfnet4-train: it saves a valid checkpoint and exits 128+15."""
    data = tmp_path_factory.getbasetemp() / "builtin"
    cfg = tiny_config(tmp_path / "run", data, steps=500, validate_at_start=False)
    args = cli_args(cfg, tmp_path / "run.toml")
    env = subprocess_env()
    proc = subprocess.Popen([sys.executable, "-m", "dfnet4.cli.train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        metrics = tmp_path / "run" / "metrics.jsonl"
        while time.time() < deadline and proc.poll() is None:
            if metrics.is_file() and metrics.read_text().count('"kind": "train"') >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "--resume" in err
    path, state = ckpt.find_latest_valid(tmp_path / "run" / "checkpoints")
    assert state["step"] >= 2 and state["model_config"]["backbone"] == "attention"
    assert state["data_position"]["batch"] == state["step"] % 8
    # a second run into the same directory without --resume is refused, clearly
    from dfnet4.cli.train import main

    assert main(args) == 2
