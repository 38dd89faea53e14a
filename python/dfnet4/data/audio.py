"""Reading audio files of any soundfile-readable format and rate as mono float32 at 48 kHz."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 48000

# Extensions libsndfile reads (its format names, lower-cased) plus the common aliases.
AUDIO_EXTENSIONS = {"." + f.lower() for f in sf.available_formats()} | {
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd", ".caf", ".w64",
}


def list_audio_files(directory: str | os.PathLike) -> list[Path]:
    """All files below `directory` with an audio extension, sorted (so shard grouping is stable)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"audio directory {str(root)!r} does not exist or is not a directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """soxr high-quality resampling along the last axis (float32 in, float32 out)."""
    if from_rate == to_rate:
        return np.asarray(audio, dtype=np.float32)
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        return soxr.resample(x, from_rate, to_rate, quality="HQ").astype(np.float32)
    # soxr wants (frames, channels)
    return soxr.resample(x.T, from_rate, to_rate, quality="HQ").T.astype(np.float32)


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read `path`; return (audio resampled to `sample_rate`, the file's own rate).

    Raises ValueError for files that decode but hold no usable audio (empty, NaN/Inf), and
    whatever soundfile raises (RuntimeError/LibsndfileError) for files it cannot decode.
    """
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no samples")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: the file holds NaN or Inf samples")
    audio = data.mean(axis=1) if mono else data.T
    return resample(audio, rate, sample_rate), rate
