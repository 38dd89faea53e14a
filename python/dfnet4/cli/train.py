"""dfnet4-train: train DfNet4 with the mamba, gru or attention backbone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "dfnet4-train"
FINETUNE_LABEL = "train.lr (the --init default)"  # where train.lr came from when --init chose it

# flag -> (config section, key); with the backbones' fused switches: flag_targets()
_FLAG_TARGETS = {
    "cache_dir": ("data", "cache_dir"),
    "builtin_dir": ("data", "builtin_dir"),
    "samples_per_epoch": ("data", "samples_per_epoch"),
    "valid_samples": ("data", "valid_samples"),
    "valid_dir": ("data", "valid_dir"),
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
    "dist_timeout": ("train", "dist_timeout"),
    "backbone": ("model", "backbone"),
    "init": ("init", "source"),
    "stage1_steps": ("init", "stage1_steps"),
    "stage1_lr": ("init", "stage1_lr"),
    "stage2_steps": ("init", "stage2_steps"),
    "stage2_lr": ("init", "stage2_lr"),
    "clean_weight": ("init", "clean_weight"),
}


def flag_targets() -> dict[str, tuple[str, str]]:
    """flag -> (config section, key), the fused switch of every backbone that has one included."""
    from dfnet4 import backbones

    return {**_FLAG_TARGETS, **{flag: (f"model.{owner}", "fused") for flag, owner in backbones.fused_flags().items()}}


def add_backbone_flags(group, default_help: str = "") -> None:
    """--backbone (the registered names) and each backbone's fused-kernel switch (--fused-scan, ...)."""
    from dfnet4 import backbones

    group.add_argument("--backbone", choices=backbones.names(), help=f"temporal backbone (default {backbones.DEFAULT})"
                       + default_help)
    for flag, owner in backbones.fused_flags().items():
        group.add_argument("--" + flag.replace("_", "-"), action=argparse.BooleanOptionalAction,
                           help=f"{owner}: its fused kernels (default: fused when the extension is built; "
                           f"config key model.{owner}.fused)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Train DfNet4 (DeepFilterNet with a selectable temporal backbone) with MLX. "
        "Without --cache-dir it trains on a built-in synthetic data set generated on first use.",
        argument_default=argparse.SUPPRESS)
    m = p.add_argument_group("model")
    add_backbone_flags(m)
    m.add_argument("--model", action="append", metavar="KEY=VALUE", dest="model_overrides",
                   help="set a DfNet4Config field, e.g. --model conv_ch=16 or --model mamba.d_state=32 "
                   "(repeatable; value parsed as TOML)")
    d = p.add_argument_group("data")
    d.add_argument("--cache-dir", help="cache written by dfnet4-prepare (default: the built-in synthetic set)")
    d.add_argument("--builtin-dir", help="where the built-in set is generated (default $DFNET4_CACHE_DIR or ~/.cache/dfnet4)")
    d.add_argument("--segment-seconds", type=float, help="length of each training mixture")
    d.add_argument("--samples-per-epoch", type=int, help="mixtures per epoch (all ranks together)")
    d.add_argument("--valid-samples", type=int, help="fixed validation mixtures")
    d.add_argument("--valid-dir", metavar="DIR", help="a real validation set instead: DIR/noisy and DIR/clean, "
                   "files paired by name, scored with dfnet4-eval's metrics (PESQ-WB, STOI, SI-SDR)")
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
    t.add_argument("--buffer-cache-gib", type=_number_or_auto, metavar="{GIB,auto}",
                   help="MLX buffer-cache limit in GiB, or 'auto' = MLX's memory limit "
                   "(default auto; MLX's CPU default of 32 MiB re-faults every large activation each step)")
    i = p.add_argument_group("starting from trained weights (docs/training.md, 'Starting from DeepFilterNet3')")
    i.add_argument("--init", metavar="{dfn3,CHECKPOINT}",
                   help="start from the official DeepFilterNet3 weights (dfn3 extra) or a dfnet4 checkpoint; "
                   "another backbone than the source's is transplanted (stages 1 and 2) before training; "
                   f"the default --lr becomes {_finetune_lr()}")
    i.add_argument("--stage1-steps", type=int, help="transplant stage 1: steps distilling each temporal part (default 600)")
    i.add_argument("--stage1-lr", type=float, help="transplant stage 1: peak learning rate (default 1e-3)")
    i.add_argument("--stage2-steps", type=int, help="transplant stage 2: steps distilling the whole model (default 1400)")
    i.add_argument("--stage2-lr", type=float, help="transplant stage 2: peak learning rate (default 3e-4)")
    i.add_argument("--clean-weight", type=float,
                   help="transplant stage 2: share of the clean-target loss beside the source's output (default 0.5)")
    r = p.add_argument_group("run")
    r.add_argument("--out", help="run directory: config.toml, metrics.jsonl, curves.png, checkpoints/")
    r.add_argument("--config", help="TOML run config (flags given here override it)")
    r.add_argument("--print-config", action="store_true", help="print the resolved TOML config and exit")
    r.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out, with "
                   "the run config stored in it (--config and flags given here override it; differences are printed)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                   help="under mlx.launch: give up with a message if not every rank has connected within "
                   "this time (default 300)")
    return p


def _finetune_lr() -> float:
    from dfnet4.train.init import FINETUNE_LR

    return FINETUNE_LR


def _number_or_auto(text: str):
    """--buffer-cache-gib: 'auto' or a number (its range is checked with the rest of the config)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"need a number of GiB or 'auto', got {text!r}") from None


def _parse_value(text: str):
    from dfnet4.train.config import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def flag_keys(args: argparse.Namespace) -> dict[str, str]:
    """{dotted config key: the flag that set it} for the flags given on this command line."""
    from dfnet4.model.config import nest_model_keys

    keys = {f"{section}.{key}": "--" + flag.replace("_", "-")
            for flag, (section, key) in flag_targets().items() if flag in args}
    for item in getattr(args, "model_overrides", []) or []:
        key = item.split("=", 1)[0].strip()
        keys[f"model.{key}"] = f"--model {key}"
        for dotted, given in nest_model_keys({key: None})[1].items():  # mamba_d_state: model.mamba.d_state
            keys[f"model.{dotted}"] = f"--model {given}"
    return keys


def resolve_config(args: argparse.Namespace):
    """(config, labels, stored checkpoint or None).

    Precedence: defaults < (with --resume) the newest valid checkpoint's stored run config, or the
    run's config.toml when no checkpoint exists < --config FILE < flags. `labels` names, for every
    key that a file, a flag or the checkpoint set, where it came from (for error messages).
    """
    from dfnet4.train import checkpoint as ckpt
    from dfnet4.train.config import RunConfig, apply_dict, load_toml

    cfg, labels, stored = RunConfig(), {}, None
    file_values = load_toml(args.config) if "config" in args else {}
    if getattr(args, "resume", False):
        out = Path(getattr(args, "out", file_values.get("train", {}).get("out", cfg.train.out)))
        # rejected checkpoints are reported by the trainer, which scans them again
        stored = ckpt.find_latest_valid(out / "checkpoints", lambda _m: None) if (out / "checkpoints").is_dir() else None
        if stored is not None:
            base, source = stored[1].get("run_config", {}), f"stored in checkpoint {stored[0]}"
        elif (out / "config.toml").is_file():
            base, source = load_toml(out / "config.toml"), f"in {out / 'config.toml'}"
        else:
            base, source = {}, ""
        _apply_labelled(cfg, base, source, labels)
        cfg.train.out = str(out)
    if "config" in args:
        _apply_labelled(cfg, file_values, f"in {args.config}", labels)
    if "steps" not in args and "epochs" in args:
        cfg.train.steps = 0  # --epochs alone means train by epochs even if the config had steps
    for flag, (section, key) in flag_targets().items():
        if flag in args:
            value = {key: getattr(args, flag)}
            for part in reversed(section.split(".")):
                value = {part: value}
            apply_dict(cfg, value)
    for item in getattr(args, "model_overrides", []) or []:
        if "=" not in item:
            raise ValueError(f"--model: got {item!r}, need KEY=VALUE")
        key, value = item.split("=", 1)
        apply_dict(cfg, {"model": {key.strip(): _parse_value(value.strip())}})
    # a fused switch of another backbone left over from a config file is dropped when --backbone changes it
    if "backbone" in args:
        from dfnet4 import backbones

        for flag, owner in backbones.fused_flags().items():
            table = cfg.model.get(owner)
            if flag not in args and cfg.model.get("backbone") != owner and isinstance(table, dict):
                table.pop("fused", None)
                if not table:
                    del cfg.model[owner]
    labels.update(flag_keys(args))
    if cfg.init.source and "train.lr" not in labels:  # fine-tuning: explicit --lr (flag, file, checkpoint) wins
        cfg.train.lr = _finetune_lr()
        labels["train.lr"] = FINETUNE_LABEL
    return cfg, labels, stored


def _apply_labelled(cfg, values: dict, source: str, labels: dict[str, str]) -> None:
    """apply_dict, remembering (and, for a bad key, naming) where the values came from."""
    from dfnet4.model.config import nest_model_keys
    from dfnet4.schema import ConfigError
    from dfnet4.train.config import apply_dict, flatten

    try:
        apply_dict(cfg, values)
    except ConfigError as exc:
        raise exc.relabel(f"{exc.key} ({source})") from None
    for key in flatten(values):
        # a table-valued field (e.g. init.part_weights) is named as a whole by its checks: label its prefixes too
        parts = key.split(".")
        for end in range(2, len(parts) + 1):
            labels[".".join(parts[:end])] = f"{'.'.join(parts[:end])} ({source})"
    if isinstance(values.get("model"), dict):  # an old flat key (mamba_d_state) is checked as model.mamba.d_state
        for dotted, given in nest_model_keys(values["model"])[1].items():
            labels[f"model.{dotted}"] = f"model.{given} ({source})"


def report_resume_changes(cfg, labels: dict[str, str], stored, log) -> None:
    """With --resume: the model comes from the checkpoint (only the fused switches may change); every
    other difference between the checkpoint's run config and this run's is printed with its source."""
    from dfnet4.model.config import merge_model_tables, resumed_model
    from dfnet4.train.config import config_changes, flatten

    path, state = stored
    saved_model = merge_model_tables(state["model_config"])  # an old checkpoint's flat keys in their tables
    saved, now = flatten(saved_model), flatten(cfg.model)
    for key, value in sorted(now.items()):
        if not key.endswith(".fused") and saved.get(key) != value:
            log(f"--resume: {labels.get('model.' + key, 'model.' + key)} = {value!r} ignored: the model is "
                f"rebuilt from the checkpoint (model.{key} = {saved.get(key)!r})")
    cfg.model = resumed_model(saved_model, cfg.model)
    for key, old, new in config_changes(state.get("run_config", {}), cfg.to_dict()):
        if key == "train.out" and Path(str(old)).resolve() == Path(new).resolve():
            continue  # the same directory, spelled differently
        if not key.startswith("model."):
            log(f"--resume: {key} = {new!r} (the checkpoint's run had {old!r}; set by {labels.get(key, 'default')})")


def check_init_and_valid_dir(cfg, labels: dict[str, str], say) -> None:
    """Before any work: an --init source that does not exist and a --valid-dir that does not pair up
    are errors naming the flag (or key); the fine-tuning learning rate of --init runs is announced."""
    from dfnet4.train.init import dfn3_unavailable

    source = cfg.init.source
    if source == "dfn3" and (why := dfn3_unavailable()):
        raise ValueError(why)
    if source and source != "dfn3" and not Path(source).exists():
        raise ValueError(f"{labels.get('init.source', 'init.source')}: got {source!r}, need 'dfn3' or an existing "
                         "dfnet4 checkpoint, checkpoints/ or run directory")
    if source and labels.get("train.lr") == FINETUNE_LABEL:
        say(f"--init: training at lr {cfg.train.lr:g}, the fine-tuning default of --init runs (--lr sets another)")
    if cfg.data.valid_dir:
        from dfnet4.evaluate.validation import check_valid_dir

        check_valid_dir(cfg.data.valid_dir, labels.get("data.valid_dir", "data.valid_dir"))


def main(argv: list[str] | None = None) -> int:
    from dfnet4.cli._common import entrypoint_setup

    entrypoint_setup()
    args = build_parser().parse_args(argv)
    from dfnet4.train.distributed import launched_rank

    quiet = (launched_rank() or 0) > 0  # under mlx.launch, rank 0 alone reports on the configuration
    say = lambda message: quiet or print(f"{PROG}: {message}", file=sys.stderr)  # noqa: E731
    from dfnet4.schema import ConfigError

    try:
        cfg, labels, stored = resolve_config(args)
        if stored is not None:
            report_resume_changes(cfg, labels, stored, say)
        try:
            cfg.validate()
        except ConfigError as exc:  # name the flag, file or checkpoint the bad value came from
            raise exc.relabel(labels.get(exc.key, exc.key)) from None
        from dfnet4.train.runtime import check_fused_flags

        check_fused_flags(cfg.model)
        if cfg.data.cache_dir:
            from dfnet4.data.cache import AudioCache, CacheError

            try:
                AudioCache(cfg.data.cache_dir)  # fail now, not after building the model
            except CacheError as exc:
                raise ValueError(f"{labels.get('data.cache_dir', 'data.cache_dir')}: {exc}") from None
        check_init_and_valid_dir(cfg, labels, say)
    except ValueError as exc:
        return _fail(str(exc))
    if getattr(args, "print_config", False):
        sys.stdout.write(cfg.to_toml())
        return 0
    from dfnet4.atomic_io import DiskFullError
    from dfnet4.train.checkpoint import CheckpointError
    from dfnet4.train.distributed import DistributedError
    from dfnet4.train.loop import Trainer, TrainingInterrupted

    try:
        summary = Trainer(cfg, resume=getattr(args, "resume", False),
                          progress=not getattr(args, "no_progress", False)).run()
    except TrainingInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 128 + int(exc.signum)
    except (ValueError, CheckpointError) as exc:
        return _fail(str(exc))
    except (DiskFullError, FloatingPointError, DistributedError) as exc:  # not the user's arguments: status 1
        return _fail(str(exc), status=1)
    if summary["rank"] != 0:
        return 0
    v = summary.get("last_valid") or {}
    ranks = f"; all {summary['world_size']} ranks finished" if summary["world_size"] > 1 else ""
    print(f"{PROG}: done at step {summary['step']}; valid loss {v.get('loss', float('nan')):.4f}, "
          f"SI-SDR {v.get('si_sdr', float('nan')):.2f} dB; outputs in {summary['out']}{ranks}")
    return 0


def _fail(message: str, status: int = 2) -> int:
    from dfnet4.cli._common import fail

    return fail(PROG, message, status)


if __name__ == "__main__":
    sys.exit(main())
