"""dfnet4's DeepFilterNet3 (`gru/fused`) against the official PyTorch DeepFilterNet3 training step,
in one run, at each thread count: forward, forward+backward and the full training step, each side
with its own loss (stated).

The PyTorch side is bench/dfn3_torch.py (the official `df` package's config, model, loss and
AdamW; see its docstring), run as a child process per thread count so that its thread settings
are its own; dfnet4 runs in this process with its kernels and OpenBLAS at the same thread count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

from dfnet4.bench import machine, objective, workloads
from dfnet4.bench.report import ms_cell
from dfnet4.bench.runner import Runner, Settings, _error
from dfnet4.bench.suite import DEFAULT_IMPLS
from dfnet4.bench.timing import measure

IMPL = next(i for i in DEFAULT_IMPLS if i.name == "gru/fused")
# DeepFilterNet3's official config.ini sets these loss terms (no 960-point spectral term, a
# 2048-point resolution, local SNR 1e-3): dfnet4's loss with the same terms and weights.
DFN3_LOSS = {"spectral_magnitude": 0.0, "spectral_complex": 0.0, "mr_fft_sizes": [256, 512, 1024, 2048],
             "mr_magnitude": 500.0, "mr_complex": 500.0, "gamma": 0.3, "lsnr": 1e-3}
LOSSES = {"dfnet4-train's loss": {}, "DFN3's loss terms": DFN3_LOSS}
# (key, label, PyTorch result key)
MEASURES = [
    ("model_forward", "forward", "forward"),
    ("model_fwd_bwd", "forward+backward", "fwd_bwd"),
    ("train_step_eager", "train step", "train_step"),
    ("train_step", "train step, mx.compile'd", None),
]
TARGETS = {"model_fwd_bwd": 1.5, "train_step_eager": 1.5}  # at 2 threads: PyTorch / dfnet4 >= 1.5
TARGET_THREADS = 2


def default_torch_script() -> Path | None:
    """bench/dfn3_torch.py of the source tree: under the working directory, or beside the package."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        path = root / "bench" / "dfn3_torch.py"
        if path.is_file():
            return path
    return None


def run_torch(script: Path, threads: int, settings: Settings, log: Callable[[str], None]) -> dict:
    """bench/dfn3_torch.py in a child process at `threads`; its JSON result, or {"error": ...}."""
    with tempfile.TemporaryDirectory(prefix="dfnet4_vs_torch_") as tmp:
        out = Path(tmp) / "torch.json"
        cmd = [sys.executable, str(script), "--threads", str(threads), "--batch", str(settings.batch),
               "--frames", str(settings.frames), "--repeats", str(settings.repeats), "--warmup",
               str(settings.warmup), "--seed", str(settings.seed), "--json", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        log(f"  PyTorch DFN3 at {threads} thread(s): {' '.join(cmd[1:])}")
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            return {"error": f"bench/dfn3_torch.py exited with {proc.returncode}: {tail}"}
        return json.loads(out.read_text())


def run_dfnet4(settings: Settings, loss_config: dict, log: Callable[[str], None]) -> dict:
    """gru/fused DfNet4 with `loss_config`: the Runner's model-level measures plus the eager step."""
    s = replace(settings, measures=["model_forward", "model_fwd_bwd", "train_step"], loss_config=loss_config)
    runner = Runner(s, log=log)
    results, info = runner.run_impl(IMPL, s.measures, s.frames)
    # the step as dfnet4-train runs it on the CPU (its compile = "auto" is off there), timed alike
    try:
        model = runner.model_factory(IMPL, s)
        task = objective.resolve(model, s.freq_bins, loss_config)
        batch = task.make_batch(s.batch, s.frames)
        step = workloads.train_step(model, batch, task.loss, s.lr, compiled=False)
        results["train_step_eager"] = measure(step, warmup=s.warmup, repeats=s.repeats).to_dict()
        log(f"  {IMPL.name} train step (eager) {results['train_step_eager']['median_ms']:.1f} ms")
    except Exception as exc:  # recorded like the Runner's failures
        results["train_step_eager"] = _error(exc)
    return {"results": results, "info": info, "loss": info.get("loss"), "loss_config": loss_config}


def run_vs_torch(settings: Settings, threads: list[int], torch_script: Path, *, blas_threads: str | None = None,
                 log: Callable[[str], None] = print, on_update: Callable[[dict], None] | None = None) -> dict:
    """For each thread count T: PyTorch at T threads first, then dfnet4 with each loss, its kernels at
    T threads. OpenBLAS (MLX's matmuls): `blas_threads` None keeps dfnet4's setting (one thread unless
    OPENBLAS_NUM_THREADS says otherwise, docs/blas.md), "same" uses T, a number that many."""
    from dfnet4 import _blas

    result = {"kind": "vs_torch", "settings": settings.to_dict(), "threads": threads,
              "torch_script": str(torch_script), "machine": machine.describe(), "runs": [], "complete": False}
    saved_env, saved_blas = os.environ.get("DFNET4_NUM_THREADS"), _blas.report(measure=False).get("openblas_threads")
    try:
        _run_all(result, settings, threads, torch_script, blas_threads, log, on_update)
    finally:  # the process keeps its own thread settings
        if saved_env is None:
            os.environ.pop("DFNET4_NUM_THREADS", None)
        else:
            os.environ["DFNET4_NUM_THREADS"] = saved_env
        if isinstance(saved_blas, int):
            _blas.set_threads(saved_blas)
    result["ratios"] = ratios(result)
    result["complete"] = True
    return result


def _run_all(result, settings, threads, torch_script, blas_threads, log, on_update) -> None:
    from dfnet4 import _blas

    for t in threads:
        os.environ["DFNET4_NUM_THREADS"] = str(t)  # read by the kernels at each call
        run = {"threads": t, **_blas_threads(_blas, t, blas_threads),
               "pytorch": run_torch(torch_script, t, settings, log), "dfnet4": {}}
        for name, loss_config in LOSSES.items():
            log(f"  dfnet4 {IMPL.name} at {t} thread(s), {name}")
            run["dfnet4"][name] = run_dfnet4(settings, loss_config, log)
        result["runs"].append(run)
        if on_update:
            on_update(result)


def _blas_threads(blas_module, t: int, wanted: str | None) -> dict:
    """Apply the OpenBLAS thread choice for thread count t; {"blas_threads": what is in force (or why
    not), "blas_split_threads": the threads the shim splits large products over (0: none)}."""
    not_set = None
    if wanted is not None:
        try:
            blas_module.set_threads(t if wanted == "same" else int(wanted))
        except (ValueError, RuntimeError) as exc:  # no shim (macOS, DFNET4_BLAS=reference): say so
            not_set = f"not set: {exc}"
    report = blas_module.report(measure=False)
    return {"blas_threads": not_set or report.get("openblas_threads", "not OpenBLAS"),
            "blas_split_threads": report.get("split_threads", 0)}


def _median(cell: dict | None, key: str = "median_ms") -> float | None:
    return None if not cell or "error" in cell else cell.get(key)


def ratios(result: dict) -> list[dict]:
    """PyTorch / dfnet4 per thread count, loss and measure (> 1: dfnet4 faster), with the targets."""
    out = []
    for run in result["runs"]:
        torch_results = run["pytorch"].get("results", {})
        for loss, side in run["dfnet4"].items():
            for key, label, torch_key in MEASURES:
                if torch_key is None:  # the compiled step: PyTorch's step is eager
                    continue
                num = _median(torch_results.get(torch_key))
                den = _median(side["results"].get(key))
                value = num / den if num and den else None
                target = TARGETS.get(key) if run["threads"] == TARGET_THREADS else None
                cpu_num = _median(torch_results.get(torch_key), "cpu_median_ms")
                cpu_den = _median(side["results"].get(key), "cpu_median_ms")
                out.append({"threads": run["threads"], "loss": loss, "measure": key, "label": label, "value": value,
                            "target": target, "met": None if value is None or target is None else value >= target,
                            "cpu_value": cpu_num / cpu_den if cpu_num and cpu_den else None,
                            "cpu_ms": [cpu_num, cpu_den]})
    return out


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = ["# dfnet4 vs the official PyTorch DeepFilterNet3: training on the CPU", "",
             *machine.summary_lines(result["machine"]),
             f"- Batch {s['batch']} x {s['frames']} frames; median [IQR] of {s['repeats']} runs after "
             f"{s['warmup']} warm-up(s), ms; both sides measured in this one run, one thread count after the other", ""]
    header = "| side | loss | " + " | ".join(label for _, label, _ in MEASURES) + " |"
    for run in result["runs"]:
        pt = run["pytorch"]
        split = run.get("blas_split_threads", 0)
        split_text = f", large products split over {split} threads" if split > 1 else ""
        lines += [f"## {run['threads']} thread(s) (dfnet4: kernels {run['threads']}, OpenBLAS {run['blas_threads']}"
                  f"{split_text})",
                  "", header, "|" + "---|" * (len(MEASURES) + 2)]
        if "error" in pt:
            lines.append(f"| PyTorch DFN3 | — | error: {pt['error']} |")
        else:
            cells = [ms_cell(pt["results"].get(k)) if k else "—" for _, _, k in MEASURES]
            lines.append(f"| PyTorch {pt['torch']}, deepfilternet {pt['deepfilternet']} | DFN3's official "
                         f"config.ini | " + " | ".join(cells) + " |")
        for loss, side in run["dfnet4"].items():
            cells = [ms_cell(side["results"].get(k)) for k, _, _ in MEASURES]
            lines.append(f"| dfnet4 {IMPL.name} | {loss} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## PyTorch / dfnet4 (above 1: dfnet4 faster)", "",
              "Wall time; and the processes' CPU time (all their threads): on a shared machine a 1-thread run's CPU "
              "time stays near its idle wall time when its wall time does not (threads that spin while waiting, "
              "as OpenMP's and OpenBLAS's do, count here too).", "",
              "| threads | loss | measure | wall-time ratio | target | CPU-time ratio (PyTorch / dfnet4 ms) |",
              "|---|---|---|---|---|---|"]
    for r in result.get("ratios", []):
        if r["value"] is None:
            continue
        target = "" if r["target"] is None else f">= {r['target']:g}: {'met' if r['met'] else '**not met**'}"
        cpu = "" if r.get("cpu_value") is None else f"{r['cpu_value']:.2f} ({r['cpu_ms'][0]:.0f} / {r['cpu_ms'][1]:.0f})"
        lines.append(f"| {r['threads']} | {r['loss']} | {r['label']} | {r['value']:.2f} | {target} | {cpu} |")
    lines += ["", "## What each side runs", ""]
    pt = next((run["pytorch"] for run in result["runs"] if "error" not in run["pytorch"]), None)
    if pt:
        opt = pt["optimizer"]
        lines += [
            f"- PyTorch: `df.deepfilternet3` ({pt['parameters']:,} parameters, random init), `df.loss.Loss` "
            f"({json.dumps(pt['loss']['terms'])}), {opt['name']} (lr {opt['lr']:g}, betas {opt['betas']}, "
            f"weight decay {opt['weight_decay']:g}, amsgrad {opt['amsgrad']}) as `df.train` sets them up; the step "
            "is `df.train.run_epoch`'s: zero_grad, forward, loss, backward, clip_grad_norm_(1.0), step. Forward is "
            "timed under torch.no_grad(). Spectra and features come from libdf "
            f"(`df.enhance.df_features`) outside the step, as the Rust data loader gives them in training "
            f"({pt['features_ms']:.0f} ms for this batch, not counted). Stubbed (raise when called): "
            f"{', '.join(pt['stubbed_modules']) or 'nothing'}.",
        ]
    for loss, cfg in LOSSES.items():
        lines.append(f"- dfnet4 with {loss}: {objective.describe_loss(_loss_config(cfg))}.")
    lines += [
        "- dfnet4: `gru/fused` DfNet4 (DeepFilterNet3's architecture, 2,132,667 parameters); its step computes the "
        "STFTs and the features itself (counted); forward = the model on the noisy spectrum; forward+backward = "
        "value_and_grad of the loss (audio -> STFT -> model -> iSTFT -> loss); train step = that + gradient-norm "
        "clipping (1.0) + AdamW (lr 5e-4, weight decay 0.05), eagerly as dfnet4-train runs it on the CPU, and the "
        "same under mx.compile.",
    ]
    return "\n".join(lines) + "\n"


def _loss_config(fields: dict):
    from dfnet4.train.losses import LossConfig

    return LossConfig(**fields)
