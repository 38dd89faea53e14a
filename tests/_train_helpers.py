"""Shared pieces of the training-system tests: a tiny real-DfNet4 run config and a small built-in set."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import dfnet4

from dfnet4.train.config import RunConfig

# The real DfNet4 at the smallest sizes its config accepts, so a CPU step takes a fraction of a second.
TINY_MODEL = {
    "conv_ch": 8,
    "emb_hidden_dim": 32,
    "df_hidden_dim": 32,
    "emb_num_layers": 2,
    "df_num_layers": 1,
    "linear_groups": 8,
    "enc_linear_groups": 8,
}
# The built-in synthetic set, shrunk (generation takes ~1 s instead of ~5 s).
SMALL_BUILTIN = {"builtin_speech": 8, "builtin_noise": 6}


def tiny_config(out: Path, builtin_dir: Path, backbone: str = "attention", **train) -> RunConfig:
    cfg = RunConfig()
    cfg.model = {"backbone": backbone, **TINY_MODEL}
    cfg.data.builtin_dir = str(builtin_dir)
    cfg.data.builtin_speech = SMALL_BUILTIN["builtin_speech"]
    cfg.data.builtin_noise = SMALL_BUILTIN["builtin_noise"]
    cfg.data.samples_per_epoch = 16
    cfg.data.valid_samples = 4
    cfg.data.mix.segment_seconds = 0.4
    cfg.train.out = str(out)
    cfg.train.batch_size = 2
    cfg.train.steps = 6
    cfg.train.warmup_steps = 2
    cfg.train.lr = 3e-3
    cfg.train.compile = False
    cfg.train.metrics_clips = 0
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def cli_args(cfg: RunConfig, config_path: Path) -> list[str]:
    """Write `cfg` as TOML and return the dfnet4-train arguments that run it."""
    config_path.write_text(cfg.to_toml())
    return ["--config", str(config_path), "--no-progress"]


def subprocess_env(**extra) -> dict:
    """Environment for a child `python -m dfnet4.cli.train`: it imports the same dfnet4 as this
    process (the installed package in CI, the source tree with PYTHONPATH=python in development)."""
    root = str(Path(dfnet4.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def read_metrics(run_dir: Path, kind: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


def local_hostfile(path: Path, ranks: int = 2) -> Path:
    """An MLX ring host file (as mlx.launch writes it) for `ranks` processes on 127.0.0.1."""
    socks = [socket.socket() for _ in range(ranks)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    path.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in ports]))
    return path
