"""dfnet4-train: train DfNet4 with the mamba, gru or attention backbone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "dfnet4-train"
BACKBONES = ("mamba", "gru", "attention")

# flag -> (config section, key)
_FLAG_TARGETS = {
    "cache_dir": ("data", "cache_dir"),
    "builtin_dir": ("data", "builtin_dir"),
    "samples_per_epoch": ("data", "samples_per_epoch"),
    "valid_samples": ("data", "valid_samples"),
    "segment_seconds": ("data.mix", "segment_seconds"),
    "out": ("train", "out"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "steps": ("train", "steps"),
    "lr": ("train", "lr"),
    "warmup_steps": ("train", "warmup_steps"),
    "weight_decay": ("train", "weight_decay"),
    "clip_grad": ("train", "clip_grad"),
    "seed": ("train", "seed"),
    "val_every": ("train", "val_every"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "keep_checkpoints": ("train", "keep_checkpoints"),
    "compile": ("train", "compile"),
    "buffer_cache_gib": ("train", "buffer_cache_gib"),
    "backbone": ("model", "backbone"),
    "fused_scan": ("model", "fused_scan"),
    "fused_gru": ("model", "fused_gru"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Train DfNet4 (DeepFilterNet with a selectable temporal backbone) with MLX. "
        "Without --cache-dir it trains on a built-in synthetic data set generated on first use.",
        argument_default=argparse.SUPPRESS)
    m = p.add_argument_group("model")
    m.add_argument("--backbone", choices=BACKBONES, help="temporal backbone (default mamba)")
    m.add_argument("--fused-scan", action=argparse.BooleanOptionalAction,
                   help="mamba: fused selective-scan kernel (default: fused when the extension is built)")
    m.add_argument("--fused-gru", action=argparse.BooleanOptionalAction,
                   help="gru: fused GRU kernel (default: fused when the extension is built)")
    m.add_argument("--model", action="append", metavar="KEY=VALUE", dest="model_overrides",
                   help="set a DfNet4Config field, e.g. --model conv_ch=16 (repeatable; value parsed as TOML)")
    d = p.add_argument_group("data")
    d.add_argument("--cache-dir", help="cache written by dfnet4-prepare (default: the built-in synthetic set)")
    d.add_argument("--builtin-dir", help="where the built-in set is generated (default $DFNET4_CACHE_DIR or ~/.cache/dfnet4)")
    d.add_argument("--segment-seconds", type=float, help="length of each training mixture")
    d.add_argument("--samples-per-epoch", type=int, help="mixtures per epoch (all ranks together)")
    d.add_argument("--valid-samples", type=int, help="fixed validation mixtures")
    t = p.add_argument_group("training")
    t.add_argument("--batch-size", type=int, help="mixtures per step and rank")
    t.add_argument("--epochs", type=int, help="epochs to train (ignored when --steps is given)")
    t.add_argument("--steps", type=int, help="optimizer steps to train (overrides --epochs)")
    t.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    t.add_argument("--warmup-steps", type=int, help="linear warm-up steps before the cosine decay")
    t.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    t.add_argument("--clip-grad", type=float, help="max global gradient norm")
    t.add_argument("--seed", type=int, help="seed of model init and data mixing")
    t.add_argument("--val-every", type=int, help="also validate every N steps (always at epoch ends)")
    t.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (always at epoch ends)")
    t.add_argument("--keep-checkpoints", type=int, help="how many checkpoints to keep")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="mx.compile the train step (default: on a GPU only; see docs/training.md)")
    t.add_argument("--buffer-cache-gib", help="MLX buffer-cache limit in GiB, or 'auto' = MLX's memory limit "
                   "(default auto; MLX's CPU default of 32 MiB re-faults every large activation each step)")
    r = p.add_argument_group("run")
    r.add_argument("--out", help="run directory: config.toml, metrics.jsonl, curves.png, checkpoints/")
    r.add_argument("--config", help="TOML run config (flags given here override it)")
    r.add_argument("--print-config", action="store_true", help="print the resolved TOML config and exit")
    r.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint in --out")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _parse_value(text: str):
    from dfnet4.train.config import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def resolve_config(args: argparse.Namespace):
    """defaults < --config (or, with --resume, the run's own config.toml) < flags."""
    from dfnet4.train.config import RunConfig, apply_dict, load_toml

    cfg = RunConfig()
    if "config" in args:
        apply_dict(cfg, load_toml(args.config))
    elif getattr(args, "resume", False):
        out = Path(getattr(args, "out", cfg.train.out))
        if (out / "config.toml").is_file():
            apply_dict(cfg, load_toml(out / "config.toml"))
    if "steps" not in args and "epochs" in args:
        cfg.train.steps = 0  # --epochs alone means train by epochs even if the config had steps
    for flag, (section, key) in _FLAG_TARGETS.items():
        if flag in args:
            target = cfg
            for part in section.split("."):
                target = target[part] if isinstance(target, dict) else getattr(target, part)
            if isinstance(target, dict):
                target[key] = getattr(args, flag)
            else:
                apply_dict(target, {key: getattr(args, flag)}, section + ".")
    for item in getattr(args, "model_overrides", []) or []:
        if "=" not in item:
            raise ValueError(f"--model: got {item!r}, need KEY=VALUE")
        key, value = item.split("=", 1)
        cfg.model[key.strip()] = _parse_value(value.strip())
    # a fused flag of the other backbone left over from a config file is dropped when --backbone changes it
    if "backbone" in args:
        for flag, owner in (("fused_scan", "mamba"), ("fused_gru", "gru")):
            if flag not in args and cfg.model.get("backbone") != owner:
                cfg.model.pop(flag, None)
    return cfg


def main(argv: list[str] | None = None) -> int:
    from dfnet4.cli._common import entrypoint_setup

    entrypoint_setup()
    args = build_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
        cfg.validate()
        from dfnet4.train.runtime import check_fused_flags

        check_fused_flags(cfg.model)
        if cfg.data.cache_dir:
            from dfnet4.data.cache import AudioCache

            AudioCache(cfg.data.cache_dir)  # fail now, not after building the model
    except ValueError as exc:
        return _fail(str(exc))
    if getattr(args, "print_config", False):
        sys.stdout.write(cfg.to_toml())
        return 0
    from dfnet4.train.checkpoint import CheckpointError
    from dfnet4.train.loop import Trainer, TrainingInterrupted

    try:
        summary = Trainer(cfg, resume=getattr(args, "resume", False),
                          progress=not getattr(args, "no_progress", False)).run()
    except TrainingInterrupted as exc:
        print(f"{PROG}: {exc}; continue with --resume --out {cfg.train.out}", file=sys.stderr)
        return 128 + int(exc.signum)
    except (ValueError, CheckpointError) as exc:
        return _fail(str(exc))
    if summary["rank"] != 0:
        return 0
    v = summary.get("last_valid") or {}
    print(f"{PROG}: done at step {summary['step']}; valid loss {v.get('loss', float('nan')):.4f}, "
          f"SI-SDR {v.get('si_sdr', float('nan')):.2f} dB; outputs in {summary['out']}")
    return 0


def _fail(message: str) -> int:
    from dfnet4.cli._common import fail

    return fail(PROG, message)


if __name__ == "__main__":
    sys.exit(main())
