"""Reading audio files of any soundfile-readable format and rate as mono float32 at 48 kHz."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 48000

# Extensions libsndfile reads (its format names, lower-cased) plus the common aliases.
AUDIO_EXTENSIONS = {"." + f.lower() for f in sf.available_formats()} | {
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd", ".caf", ".w64",
}


class TruncatedAudioError(ValueError):
    """An audio file that holds fewer frames than its header announces (a cut copy or download)."""


def is_broken_link(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def list_audio_files(directory: str | os.PathLike) -> list[Path]:
    """All files below `directory` with an audio extension, sorted (so shard grouping is stable).

    Broken symbolic links are listed too, so that the callers report them (read_audio raises for
    them) instead of skipping them unseen."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"audio directory {str(root)!r} does not exist or is not a directory")
    return sorted(p for p in root.rglob("*") if (p.is_file() or is_broken_link(p)) and p.suffix.lower() in AUDIO_EXTENSIONS)


def wav_header_frames(path: str | os.PathLike) -> int | None:
    """The frame count a RIFF/WAVE header announces (data chunk size / block align), or None when the
    file is not a plain WAV or the size is a streaming placeholder (0 or 0xFFFFFFFF). libsndfile
    silently shortens its own count to what the file holds, so this is read here."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size)
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                    if size % 2:
                        f.seek(1, os.SEEK_CUR)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + size % 2, os.SEEK_CUR)
    except OSError:
        return None


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

    Raises FileNotFoundError for a broken symbolic link, TruncatedAudioError for a file cut short
    (fewer frames than its header announces), ValueError for files that decode but hold no usable
    audio (empty, NaN/Inf), and whatever soundfile raises (RuntimeError/LibsndfileError) for files
    it cannot decode.
    """
    with _open(path) as f:
        announced = wav_header_frames(path) or f.frames
        data = f.read(dtype="float32", always_2d=True)
        rate = f.samplerate
    _check_complete(path, data.shape[0], announced)
    _check_finite(path, data)
    audio = data.mean(axis=1) if mono else data.T
    return resample(audio, rate, sample_rate), rate


def read_blocks(path: str | os.PathLike, block_frames: int) -> Iterator[np.ndarray]:
    """The file's samples as float32 (channels, frames) blocks of `block_frames` at its own rate,
    for reading files of any length in constant memory. The checks of `read_audio`, as far as the
    blocks read so far allow: NaN/Inf in a block raise at that block, a truncated or empty file
    after the last one."""
    with _open(path) as f:
        announced = wav_header_frames(path) or f.frames
        got = 0
        for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
            _check_finite(path, block)
            got += block.shape[0]
            yield block.T
    _check_complete(path, got, announced)


def _open(path: str | os.PathLike) -> sf.SoundFile:
    path = Path(path)
    if is_broken_link(path):
        raise FileNotFoundError(f"{path}: broken symbolic link (its target {os.readlink(path)!r} does not exist)")
    return sf.SoundFile(str(path))


def _check_complete(path, frames: int, announced: int) -> None:
    if frames < announced:
        raise TruncatedAudioError(f"{path}: truncated: the header announces {announced} frames, the file holds "
                                  f"{frames} ({frames / announced:.0%})")
    if frames == 0:
        raise ValueError(f"{path}: the file holds no samples")


def _check_finite(path, data: np.ndarray) -> None:
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: the file holds NaN or Inf samples")
