"""Nothing lost, ever (issue 12): each case a user hit, as a test that failed before its fix.

- kill -9 at every phase of training, one process after another on the same run, then a resume
  that reproduces the uninterrupted run's losses bit for bit; the newest complete checkpoint wins
  whatever `latest` says; no false "saved" message; the checkpoint's own config wins on resume;
- a full disk, on a real small tmpfs where this machine allows mounting one and through fake
  ENOSPC errors everywhere: one line naming the path and the space, no temp files, earlier
  checkpoints and shards intact, and resuming after space is freed works;
- dfnet4-enhance never writes over an input, keeps existing outputs unless --overwrite, writes
  atomically, and keeps the input's sample format;
- every config field validated (a hypothesis fuzz over the schema, for flags and TOML alike);
- prepare reports truncated WAVs and broken symlinks, and cleans up after killed runs;
- distributed start-up timeout and a rank killed mid-run; the run lock on --out.

Over 500 lines on purpose: it is docs/reliability.md's "How it is tested" table as code, one test per
row, sharing the kill-child, full-disk and tiny-run fixtures defined here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import typing
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from _train_helpers import TINY_MODEL, cli_args, local_hostfile, read_metrics, subprocess_env, tiny_config
from dfnet4 import atomic_io, backbones
from dfnet4.cli import enhance as enhance_cli
from dfnet4.cli import prepare as prepare_cli
from dfnet4.cli import train as train_cli
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.train import checkpoint as ckpt
from dfnet4.train.config import RunConfig, tomllib
from dfnet4.train.loop import Trainer

HERE = Path(__file__).parent
STEPS = 8  # one epoch of the tiny config (16 samples / batch 2)


def _no_temp_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "builtin"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> dict:
    """The uninterrupted run every interrupted one must reproduce (with checkpoints, for their size)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    summary = Trainer(tiny_config(out, data, steps=STEPS, checkpoint_every=2), progress=False).run()
    return {"losses": summary["losses"], "out": out,
            "checkpoint_bytes": sum(f.stat().st_size for f in (out / "checkpoints" / ckpt.checkpoint_name(STEPS)).iterdir())}


def _train_argv(tmp_path: Path, data: Path, name: str = "run", **train) -> tuple[Path, list[str]]:
    cfg = tiny_config(tmp_path / name, data, **{"steps": STEPS, **train})
    return tmp_path / name, cli_args(cfg, tmp_path / f"{name}.toml")


# ------------------------------------------------------------------------------------------------
# kill -9 at every phase, resume, same losses


# Each process of the chain is killed at the next phase; each resumes what the last one left.
KILL_CHAIN = [
    "first-validation",  # step-0 validation of a new run: nothing saved yet
    "mid-step:2",  # during a train step, no checkpoint yet
    "torn-weights:2",  # checkpoint 2's weights half written in its temp directory
    "before-latest:2",  # checkpoint 2 renamed into place, no `latest` yet
    "metrics-line:3",  # half a metrics line appended
    "metrics-truncation",  # rolling metrics.jsonl back on resume
    "state-written:4",  # checkpoint 4 complete in its temp directory, not renamed
    "in-prune:4",  # checkpoint 4 in place and `latest`, old ones being pruned
    "config-write",  # config.toml being rewritten at start
    "before-latest:6",  # checkpoint 6 in place, `latest` still naming 4
]


def test_kill_at_every_phase_then_resume_reproduces_the_losses(tmp_path, data, reference):
    run, argv = _train_argv(tmp_path, data, checkpoint_every=2, keep_checkpoints=3)
    env = subprocess_env()
    for phase in KILL_CHAIN:
        proc = subprocess.run([sys.executable, str(HERE / "_kill_child.py"), phase, "--", *argv, "--resume"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, f"{phase}: {proc.returncode}\n{proc.stderr}"
    assert (run / "checkpoints" / ckpt.LATEST).read_text().strip() == "step-00000004"
    final = subprocess.run([sys.executable, "-m", "dfnet4.cli.train", *argv, "--resume"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert f"resumed from {run / 'checkpoints' / 'step-00000006'}" in final.stdout + final.stderr
    train = read_metrics(run)
    assert [r["step"] for r in train] == list(range(1, STEPS + 1))  # each step once, none lost or doubled
    assert [r["loss"] for r in train] == reference["losses"]  # bit for bit
    assert ckpt.find_latest_valid(run / "checkpoints")[1]["step"] == STEPS
    assert _no_temp_files(run) == []  # the killed writers' leftovers were removed


def test_newest_valid_checkpoint_wins_whatever_latest_says(tmp_path, capsys):
    params = {"w": mx.zeros((3,))}
    for step in (36, 39, 40):
        ckpt.save(tmp_path, step, params, {"step": mx.array(step)}, {}, keep=3)
    (tmp_path / ckpt.LATEST).write_text("step-00000036\n")  # killed before `latest` caught up
    assert ckpt.find_latest_valid(tmp_path)[1]["step"] == 40
    (tmp_path / "step-00000040" / ckpt.WEIGHTS).write_bytes(b"torn")
    assert ckpt.find_latest_valid(tmp_path)[1]["step"] == 39  # then the newest that is valid
    assert "ignoring invalid checkpoint" in capsys.readouterr().out


def test_sigterm_during_the_first_validation_claims_no_checkpoint(tmp_path, data, monkeypatch, capsys):
    run, argv = _train_argv(tmp_path, data)
    validate = Trainer.validate

    def validate_then_signal(self):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives during the step-0 validation
        return validate(self)

    monkeypatch.setattr(Trainer, "validate", validate_then_signal)
    assert train_cli.main(argv) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "no checkpoint was written" in err and "saved" not in err and "--resume" not in err
    assert not ckpt.candidates(run / "checkpoints")


def test_resume_takes_the_checkpoints_config_and_prints_changes(tmp_path, data, capsys):
    run, argv = _train_argv(tmp_path, data, checkpoint_every=2, steps=4)
    assert train_cli.main(argv) == 0
    (run / "config.toml").write_text("")  # emptied (e.g. by a crash of an older version)
    capsys.readouterr()
    assert train_cli.main(["--resume", "--out", str(run), "--print-config"]) == 0
    resolved = RunConfig.from_dict(tomllib.loads(capsys.readouterr().out))
    assert (resolved.train.batch_size, resolved.train.steps) == (2, 4)  # the run's, not the defaults (4, 0)
    (run / "config.toml").unlink()
    assert train_cli.main(["--resume", "--out", str(run), "--steps", "6", "--model", "conv_ch=16", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "train.steps = 6 (the checkpoint's run had 4; set by --steps)" in err
    assert "--model conv_ch = 16 ignored: the model is rebuilt from the checkpoint (model.conv_ch = 8)" in err
    header = read_metrics(run, "header")[-1]
    assert (header["batch_size"], header["total_steps"], header["start_step"]) == (2, 6, 4)
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 7))


# ------------------------------------------------------------------------------------------------
# full disk: a real tmpfs where it can be mounted, fake ENOSPC everywhere


@contextlib.contextmanager
def _tmpfs(path: Path, size: int):
    path.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                              text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here: the full-disk case runs on a small tmpfs mounted by root")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _grow(path: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def test_training_on_a_full_disk_then_resuming(tmp_path, data, reference, capsys):
    size = 3 * reference["checkpoint_bytes"] + (200 << 10)  # about two checkpoints, and the small files
    with _tmpfs(tmp_path / "disk", size) as disk:
        run, argv = _train_argv(disk, data, checkpoint_every=1, keep_checkpoints=10)
        assert train_cli.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no space left on device writing checkpoint" in err[0], err
        assert "needs" in err[0] and "available" in err[0] and str(run / "checkpoints") in err[0]
        saved = ckpt.find_latest_valid(run / "checkpoints")
        assert saved is not None and saved[1]["step"] >= 1  # the earlier checkpoints are intact
        assert _no_temp_files(run) == []
        # resuming before space is freed: the same one-line error, nothing damaged
        assert train_cli.main([*argv, "--resume"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no space left on device" in err[0], err
        steps = [r["step"] for r in read_metrics(run)]
        assert _no_temp_files(run) == [] and steps == list(range(1, len(steps) + 1))
        _grow(disk, 64 << 20)
        assert train_cli.main([*argv, "--resume"]) == 0
        assert [r["loss"] for r in read_metrics(run)] == reference["losses"]


def test_real_write_errors_on_a_full_disk_become_one_clear_error(tmp_path, monkeypatch):
    """With the free-space check out of the way, the write itself fails: MLX's '[write] Unable to
    write' for a checkpoint, NumPy's 'N requested and M written' for a shard."""
    monkeypatch.setattr(ckpt, "check_free_space", lambda *a, **k: None)
    monkeypatch.setattr(atomic_io, "check_free_space", lambda *a, **k: None)
    with _tmpfs(tmp_path / "disk", 512 << 10) as disk:
        ckpt.save(disk, 1, {"w": mx.zeros((16,))}, {}, {})
        with pytest.raises(atomic_io.DiskFullError, match=r"writing checkpoint .*step-00000002: needs .* available"):
            ckpt.save(disk, 2, {"w": mx.zeros((1 << 18,))}, {}, {})  # 1 MiB
        assert ckpt.find_latest_valid(disk)[1]["step"] == 1 and _no_temp_files(disk) == []
        with pytest.raises(atomic_io.DiskFullError, match=r"writing shard .*x\.npy: needs"):
            from dfnet4.data.prepare import save_npy_atomic

            save_npy_atomic(disk / "x.npy", np.zeros(1 << 18, np.float32))
        assert not (disk / "x.npy").exists() and _no_temp_files(disk) == []


def _speech_noise_dirs(root: Path, files: int = 6, seconds: float = 1.0) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for kind in ("speech", "noise"):
        (root / kind).mkdir(parents=True)
        for i in range(files):
            sf.write(str(root / kind / f"{i}.wav"), 0.1 * rng.standard_normal(int(48000 * seconds)), 48000)
    return root / "speech", root / "noise"


def test_prepare_on_a_full_disk_then_resuming(tmp_path, capsys):
    speech, noise = _speech_noise_dirs(tmp_path / "in")
    with _tmpfs(tmp_path / "disk", 600 << 10) as disk:  # 12 clips of 192 kB do not fit
        argv = ["--speech", str(speech), "--noise", str(noise), "--out", str(disk / "cache"), "--files-per-shard", "1",
                "--no-progress"]
        assert prepare_cli.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no space left on device writing shard" in err[0] and "shard-0000" in err[0], err
        assert "run the same command again to resume" in err[0] and _no_temp_files(disk) == []
        done = len(list((disk / "cache" / "speech").glob("shard-*.json")))
        assert 1 <= done < 6
        _grow(disk, 16 << 20)
        assert prepare_cli.main(argv) == 0
        speech_line = [line for line in capsys.readouterr().out.splitlines() if "speech: 6 clips" in line]
        assert len(speech_line) == 1 and f"({done} reused)" in speech_line[0]


def test_fake_enospc_in_a_checkpoint_write(tmp_path, data, monkeypatch, capsys):
    """Always runs: MLX's error mid-checkpoint (as seen on a full disk) through dfnet4-train."""
    run, argv = _train_argv(tmp_path, data, steps=4, checkpoint_every=2, validate_at_start=False)
    real = mx.save_safetensors

    def failing_on_the_second_checkpoint(path, arrays, *a, **k):
        if "step-00000004" not in path:
            return real(path, arrays, *a, **k)
        Path(path).write_bytes(b"\0" * 237)  # what MLX wrote before the disk was full
        raise RuntimeError("[write] Unable to write 237 bytes to file.")

    monkeypatch.setattr(mx, "save_safetensors", failing_on_the_second_checkpoint)
    assert train_cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no space left on device writing checkpoint {run / 'checkpoints' / 'step-00000004'}" \
        in err[0] and "needs" in err[0], err
    assert ckpt.find_latest_valid(run / "checkpoints")[1]["step"] == 2 and _no_temp_files(run) == []


def test_fake_enospc_in_metrics_truncation_and_prepare(tmp_path, monkeypatch, capsys):
    from dfnet4.train.metrics import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(4):
        log.write(kind="train", step=step, loss=1.0)
    before = log.path.read_bytes()

    class FullFile:
        def __init__(self, path, mode):
            self.f = open(path, mode)

        def write(self, data):
            self.f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(atomic_io, "open", FullFile, raising=False)
    with pytest.raises(atomic_io.DiskFullError, match="metrics.jsonl: needs"):
        log.truncate_after(1)
    assert log.path.read_bytes() == before and _no_temp_files(tmp_path) == []
    monkeypatch.undo()

    speech, noise = _speech_noise_dirs(tmp_path / "in", files=2)

    def numpy_short_write(file, arr, *a, **k):
        Path(file).write_bytes(b"\x93NUMPY" + b"\0" * 100)
        raise OSError("120000 requested and 20448 written")

    monkeypatch.setattr(np, "save", numpy_short_write)
    assert prepare_cli.main(["--speech", str(speech), "--noise", str(noise), "--out", str(tmp_path / "c"),
                             "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device writing shard" in err[0], err
    assert _no_temp_files(tmp_path / "c") == []


def test_low_disk_space_is_reported_before_the_first_step(tmp_path, data, monkeypatch, capsys):
    run, argv = _train_argv(tmp_path, data, steps=1)
    from dfnet4.train import loop

    monkeypatch.setattr(ckpt, "estimate_bytes", lambda *a: 1000)  # a checkpoint, as the trainer sees it
    monkeypatch.setattr(loop, "free_bytes", lambda _path: 999)
    assert train_cli.main(argv) == 1  # not even one checkpoint fits: stop before training
    err = capsys.readouterr().err
    assert "no space left on device for the checkpoints in" in err and "needs 1000 bytes, 999 bytes available" in err
    assert not (run / "metrics.jsonl").exists()
    monkeypatch.setattr(loop, "free_bytes", lambda _path: 2500)  # fewer than keep_checkpoints + 1 fit
    assert train_cli.main(argv) == 0
    assert capsys.readouterr().out.count("warning: low disk space") == 1


# ------------------------------------------------------------------------------------------------
# dfnet4-enhance: inputs are never replaced, outputs only with --overwrite, written atomically


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("enh") / "run"
    mx.random.seed(3)
    model_cfg = {"backbone": "attention", **TINY_MODEL}
    model = DfNet4(DfNet4Config.from_dict(model_cfg))
    state = {"epoch": 0, "data_position": {"epoch": 0, "batch": 0}, "model_config": model_cfg}
    ckpt.save(root / "checkpoints", 1, model.parameters(), {"step": mx.array(1, mx.uint64)}, state)
    return root


def _audio(path: Path, subtype: str = "PCM_16", seconds: float = 0.3, rate: int = 48000) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(len(str(path))).standard_normal(int(rate * seconds))
    sf.write(str(path), x, rate, subtype=subtype)
    return path.read_bytes()


def _enhance(*argv) -> int:
    return enhance_cli.main([str(a) for a in argv])


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlinked-dir", "hard-link", "case-folded"])
def test_enhance_never_writes_over_an_input(tmp_path, checkpoint_dir, spelling, monkeypatch, capsys):
    d = tmp_path / "inplace"
    src = d / ("x.wav" if spelling != "hard-link" else "x.flac")
    if spelling == "hard-link":
        original = _audio(src, "PCM_16")
        os.link(src, d / "x.wav")  # x.wav IS x.flac: the output name for x.flac
    else:
        original = _audio(src)
    out = {"same": d, "dotted": tmp_path / "." / "inplace" / ".." / "inplace", "hard-link": d,
           "symlinked-dir": tmp_path / "alias", "case-folded": tmp_path / "INPLACE"}[spelling]
    if spelling == "symlinked-dir":
        out.symlink_to(d)
    if spelling == "case-folded":  # a case-insensitive file system, as on macOS or Windows
        monkeypatch.setattr(os.path, "normcase", lambda p: os.fspath(p).lower())
    for extra in ([], ["--overwrite"]):  # --overwrite never extends to inputs
        assert _enhance(src, "-o", out, "--checkpoint", checkpoint_dir, *extra) == 2
        err = capsys.readouterr().err
        assert "which is the input" in err and err.startswith("dfnet4-enhance: error: -o:"), err
        assert src.read_bytes() == original
    assert _no_temp_files(d) == []


def test_enhance_keeps_existing_outputs_unless_overwrite(tmp_path, checkpoint_dir, capsys):
    d = tmp_path / "clash"
    _audio(d / "rec.flac", "PCM_16")
    unrelated = _audio(d / "rec.wav", "PCM_24", seconds=0.1)
    assert _enhance(d / "rec.flac", "-o", d, "--checkpoint", checkpoint_dir) == 2
    err = capsys.readouterr().err
    assert f"1 output file(s) exist already: {d / 'rec.wav'}; pass --overwrite" in err
    assert (d / "rec.wav").read_bytes() == unrelated
    assert _enhance(d / "rec.flac", "-o", d, "--checkpoint", checkpoint_dir, "--overwrite") == 0
    assert sf.info(str(d / "rec.wav")).frames == int(0.3 * 48000) and _no_temp_files(d) == []


def test_enhance_writes_each_output_atomically(tmp_path, checkpoint_dir, monkeypatch, capsys):
    for name in ("a.wav", "b.wav"):
        _audio(tmp_path / "in" / name)
    real = sf.write

    def interrupted_on_b(file, data, *a, **k):
        if ".b.wav.tmp-" in str(file):
            real(file, data[: len(data) // 3], *a, **k)  # part of the file, then the process is stopped
            raise KeyboardInterrupt
        return real(file, data, *a, **k)

    monkeypatch.setattr(sf, "write", interrupted_on_b)
    with pytest.raises(KeyboardInterrupt):
        _enhance(tmp_path / "in", "-o", tmp_path / "out", "--checkpoint", checkpoint_dir)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav"]  # no half b.wav, no temp file
    (tmp_path / "out" / ".b.wav.tmp-999999999.wav").write_bytes(b"left by a killed run")
    monkeypatch.undo()
    assert _enhance(tmp_path / "in" / "b.wav", "-o", tmp_path / "out", "--checkpoint", checkpoint_dir) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.wav"]


@pytest.mark.parametrize("subtype, argv, want", [
    ("PCM_24", [], ("WAV", "PCM_24")),
    ("FLOAT", [], ("WAV", "FLOAT")),
    ("PCM_16", ["--format", "flac"], ("FLAC", "PCM_16")),
    ("FLOAT", ["--format", "flac"], ("FLAC", "PCM_24")),  # FLAC has no float: its finest
    ("PCM_24", ["--subtype", "PCM_16"], ("WAV", "PCM_16")),
])
def test_enhance_keeps_the_input_sample_format(tmp_path, checkpoint_dir, subtype, argv, want):
    _audio(tmp_path / "x.wav", subtype)
    assert _enhance(tmp_path / "x.wav", "-o", tmp_path / "o", "--checkpoint", checkpoint_dir, *argv) == 0
    out = tmp_path / "o" / ("x.flac" if "flac" in argv else "x.wav")
    info = sf.info(str(out))
    assert (info.format, info.subtype) == want


def test_enhance_24_bit_output_is_not_requantised_to_16(tmp_path, checkpoint_dir):
    from dfnet4.enhance import enhance_array, load_checkpoint_model

    _audio(tmp_path / "x.wav", "PCM_24")
    assert _enhance(tmp_path / "x.wav", "-o", tmp_path / "o", "--checkpoint", checkpoint_dir) == 0
    model, _ = load_checkpoint_model(checkpoint_dir, log=lambda m: None)
    x, _ = sf.read(str(tmp_path / "x.wav"), dtype="float32")
    want = np.clip(enhance_array(model, x[None]), -1, 1)[0]
    got, _ = sf.read(str(tmp_path / "o" / "x.wav"), dtype="float64")
    err = np.abs(got - want).max()
    assert err < 2**-22 and err < 0.5 / 32768  # 24-bit rounding, well below a 16-bit step


def test_enhance_subtype_that_the_format_lacks(tmp_path, checkpoint_dir, capsys):
    _audio(tmp_path / "x.wav")
    assert _enhance(tmp_path / "x.wav", "-o", tmp_path / "o", "--checkpoint", checkpoint_dir, "--format", "flac",
                    "--subtype", "FLOAT") == 2
    assert "--subtype: FLOAT is not available in flac files" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# flags and TOML: every field validated, clear errors, exit 2


@pytest.mark.parametrize("argv, message", [
    (["--model", "conv_ch=abc"], "--model conv_ch: got 'abc', need an integer >= 1"),
    (["--model", "conv_ch=0"], "--model conv_ch: got 0, need an integer >= 1"),
    (["--model", "emb_hidden_dim=1.5"], "--model emb_hidden_dim: got 1.5, need an integer >= 1"),
    (["--model", "conv_ch=-4"], "--model conv_ch: got -4, need an integer >= 1"),
    (["--segment-seconds", "nan"], "--segment-seconds: got nan, need a finite number >= 0.02"),
    (["--lr", "inf"], "--lr: got inf, need a finite number > 0"),
    (["--weight-decay", "nan"], "--weight-decay: got nan, need a finite number >= 0"),
    (["--model", "linear_groups=7"], "--model linear_groups: got 7, need a divisor of"),
    (["--model", "sr=16000"], "--model sr: got 16000, need 48000 (the training data's rate)"),
    (["--buffer-cache-gib", "-1"], "--buffer-cache-gib: got -1.0, need a finite number >= 0 or 'auto'"),
])
def test_flags_that_ended_in_tracebacks(argv, message, capsys):
    assert train_cli.main([*argv, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dfnet4-train: error: {message}") and err.count("\n") == 1, err


def _schema_fields():
    """(dotted key, flag or None) for every field of the run config, the model's included."""
    flags = {f"{s}.{k}": "--" + f.replace("_", "-") for f, (s, k) in train_cli.flag_targets().items()}

    def walk(obj, where):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from walk(value, f"{where}{f.name}.")
            elif f.name != "model":
                yield f"{where}{f.name}"

    model = DfNet4Config()
    keys = list(walk(RunConfig(), "")) + [k for k in walk(model, "model.") if k != "model.extra"]
    keys += [f"model.{name}" for name in backbones.names()]  # a table given a single value
    return [(k, flags.get(k)) for k in keys]


FIELDS = _schema_fields()
ODD_VALUES = st.one_of(
    st.integers(-3, 5), st.sampled_from([2**31, -(2**40), 10**30]), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=5), st.lists(st.integers(-2, 3), max_size=3),
    st.lists(st.floats(allow_nan=True), max_size=2), st.just({"x": 1}))


def _toml_value(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value) if not isinstance(value, dict) else "{ x = 1 }"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=ODD_VALUES, via_flag=st.booleans())
@example(field=("init.part_weights", None), value={"x": 1}, via_flag=False)  # a table field's key named by file
def test_any_value_of_any_field_is_accepted_or_named(tmp_path, capsys, field, value, via_flag):
    """Fuzz over the config schema: any value of any field, by flag or TOML, ends in exit 0 or a
    one-line error naming that flag or key (exit 2), never a traceback."""
    key, flag = field
    section, name = key.rsplit(".", 1)
    capsys.readouterr()
    if via_flag and key.startswith("model."):
        model_key = key.removeprefix("model.")  # a backbone's option: --model mamba.d_state=...
        argv = ["--model", f"{model_key}={_toml_value(value)}"]
        label = f"--model {model_key}"
    elif via_flag and flag is not None:
        argv = [flag, str(value)] if not isinstance(value, bool) else [flag if value else "--no-" + flag[2:]]
        label = flag
    else:
        path = tmp_path / "c.toml"
        path.write_text(f"[{section}]\n{name} = {_toml_value(value)}\n")
        argv = ["--config", str(path)]
        label = f"{key} (in {path})"
    try:
        rc = train_cli.main([*argv, "--print-config"])
    except SystemExit as exc:  # argparse refused the flag's text itself: its own usage error, exit 2
        assert exc.code == 2 and f"{flag}" in capsys.readouterr().err
        return
    err = capsys.readouterr().err
    assert rc in (0, 2)
    event(f"exit {rc}")
    if rc == 2:  # one line naming this field, or the other field of a broken constraint between two
        assert err.count("\n") == 1 and err.startswith("dfnet4-train: error: "), err
        assert err.startswith(f"dfnet4-train: error: {label}: ") or NAMED.match(err), err


NAMED = re.compile(r"dfnet4-train: error: (--[a-z-]+|--model [a-z_.]+|(model|train|data|loss)\.[a-z_.]+( \(in [^)]*\))?)"
                   r"(: | applies)")


def _typed(hint) -> st.SearchStrategy:
    """Values of a field's own type, near the small sizes where constraints between fields bite."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool or args == [bool]:
        return st.booleans() | (st.none() if args else st.nothing())
    if hint is int or args == [int]:
        return st.sampled_from([0, 1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32]) | st.integers(-2, 40)
    if hint is float:
        return st.floats(-60, 60)
    if typing.get_origin(hint) is tuple:
        return st.tuples(st.integers(0, 5), st.integers(0, 5)).map(list)
    return st.sampled_from(["gru", "mamba", "attention", "lstm"])


MODEL_STRATEGIES = {f.name: _typed(t) for f, t in
                    ((f, typing.get_type_hints(DfNet4Config)[f.name]) for f in dataclasses.fields(DfNet4Config))
                    if f.name not in ("extra", "sr", "backbone", *backbones.names())}
MODEL_STRATEGIES.update({f"{name}.{f.name}": _typed(typing.get_type_hints(options)[f.name])  # mamba.d_state
                         for name in backbones.names() for options in [backbones.options_class(name)]
                         for f in dataclasses.fields(options)})


@settings(max_examples=60, deadline=None)
@given(changes=st.lists(st.sampled_from(sorted(MODEL_STRATEGIES)), min_size=1, max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: MODEL_STRATEGIES[n] for n in names})),
       backbone=st.sampled_from(["gru", "mamba", "attention"]))
@example(changes={"attention_heads": 32}, backbone="attention")  # found by this test: one feature per head
def test_any_model_config_is_refused_by_name_or_builds_and_runs(changes, backbone):
    """Fuzz over DfNet4Config: a value is either refused by name (ConfigError for one of the fields
    changed) or the model builds and runs forward and backward: no TypeError, ZeroDivisionError
    or MLX shape error from deep inside."""
    from dfnet4 import dsp
    from dfnet4.schema import ConfigError

    d = {**TINY_MODEL, "backbone": backbone, "fused_gru": False, "fused_scan": False, **changes}
    try:
        cfg = DfNet4Config.from_dict(d)
    except ConfigError as exc:  # names a field changed, or the field it must agree with (and that one)
        assert exc.key in changes or any(name in exc.problem for name in changes), exc
        event("refused")
        return
    event("built")
    model = DfNet4(cfg)
    spec = dsp.stft(mx.random.normal((1, 6 * cfg.hop_size)) * 0.1, cfg.fft_size, cfg.hop_size)
    loss = lambda m: mx.mean(mx.abs(m(spec)[0]))  # noqa: E731
    value, grads = nn.value_and_grad(model, loss)(model)
    mx.eval(value, grads)
    assert math.isfinite(value.item())


# ------------------------------------------------------------------------------------------------
# prepare: truncated and linked files reported, killed runs cleaned up


def test_prepare_reports_a_truncated_wav_and_a_broken_symlink(tmp_path, capsys):
    speech, noise = _speech_noise_dirs(tmp_path / "in", files=2)
    whole = (speech / "0.wav").read_bytes()
    (speech / "cut.wav").write_bytes(whole[: 44 + (len(whole) - 44) // 2])  # header intact, data cut in half
    (speech / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    assert prepare_cli.main(["--speech", str(speech), "--noise", str(noise), "--out", str(tmp_path / "c"),
                             "--no-progress"]) == 0
    text = capsys.readouterr()
    failed = {f["source"]: f["error"] for f in json.loads((tmp_path / "c" / "index.json").read_text())
              ["kinds"]["speech"]["failed"]}
    assert set(failed) == {"cut.wav", "gone.wav"}
    assert "the header announces 48000 frames, the file holds 24000 (50%)" in failed["cut.wav"]
    assert "broken symbolic link" in failed["gone.wav"]
    assert "cut.wav" in text.out + text.err and "gone.wav" in text.out + text.err


def test_temp_files_of_killed_runs_are_removed_next_time(tmp_path):
    from dfnet4.data.builtin import ensure_builtin
    from dfnet4.data.prepare import prepare

    speech, noise = _speech_noise_dirs(tmp_path / "in", files=2)
    cache = tmp_path / "cache"
    (cache / "speech").mkdir(parents=True)
    dead = 999_999_999  # above pid_max: never a running process
    stale = [cache / "speech" / f".shard-00000.npy.tmp-{dead}.npy", cache / f".index.json.tmp-{dead}"]
    live = cache / "speech" / f".shard-00001.npy.tmp-{os.getppid()}.npy"  # a writer still running
    for p in [*stale, live]:
        p.write_bytes(b"partial")
    prepare(cache, speech, noise, progress=False)
    assert not any(p.exists() for p in stale) and live.exists()

    builtin = tmp_path / "builtin"
    leftover = builtin / f".builtin-v1-s2x4-n2x6-seed20240601.tmp-{dead}"
    (leftover / "speech").mkdir(parents=True)
    (leftover / "speech" / "shard-00000.npy").write_bytes(b"\0" * 1000)
    ensure_builtin(builtin, 2, 2, progress=False)
    assert not leftover.exists()


# ------------------------------------------------------------------------------------------------
# distributed: a rank that never starts, a rank killed mid-run


@pytest.mark.skipif(not mx.distributed.is_available(), reason="this MLX build has no distributed backend")
def test_a_rank_that_never_starts_ends_the_others_with_a_message(tmp_path, data):
    _, argv = _train_argv(tmp_path, data)
    env = subprocess_env(MLX_HOSTFILE=str(local_hostfile(tmp_path / "hosts.json")), MLX_RANK="0")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "dfnet4.cli.train", *argv, "--dist-timeout", "3"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "rank 0: connecting to the other ranks did not complete within 3 s" in proc.stderr
    assert time.time() - t0 < 30


@pytest.mark.skipif(not mx.distributed.is_available(), reason="this MLX build has no distributed backend")
def test_a_rank_killed_mid_run_fails_the_run_with_a_message(tmp_path, data):
    run, argv = _train_argv(tmp_path, data, steps=200, validate_at_start=False)
    env = subprocess_env(MLX_HOSTFILE=str(local_hostfile(tmp_path / "hosts.json")))
    procs = [subprocess.Popen([sys.executable, "-m", "dfnet4.cli.train", *argv], env={**env, "MLX_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((run / "metrics.jsonl").is_file() and
                                              '"kind": "train"' in (run / "metrics.jsonl").read_text()):
            time.sleep(0.1)
        procs[1].kill()
        out, err = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode == 1, err
    assert "another rank stopped or crashed" in err and "ranks finished" not in out


# ------------------------------------------------------------------------------------------------
# concurrent runs on one --out


def test_a_second_run_on_the_same_out_is_refused(tmp_path, data, capsys):
    from dfnet4.train.runlock import RunLock

    run, argv = _train_argv(tmp_path, data, steps=2)
    with RunLock(run):  # another dfnet4-train holds the run
        assert train_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert f"--out: {str(run)!r} is in use by another dfnet4-train (process {os.getpid()}" in err
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()  # it touched nothing
    (run / ".lock").write_text(json.dumps({"pid": 999_999_999, "host": socket.gethostname()}))  # killed owner
    assert train_cli.main(argv) == 0
    assert "ended without releasing it" in capsys.readouterr().out
