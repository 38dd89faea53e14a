"""Enhancing audio files with a trained checkpoint or the official DeepFilterNet3 weights.

Outputs never replace an input (whatever the spelling of the path: symlinks, `./`, letter case on
case-insensitive file systems, hard links), replace an existing file only when asked
(`overwrite`), and are written atomically (dfnet4.atomic_io), so an interrupted run leaves no half
file. The output keeps the input's sample format where the output format has it (see `subtype_for`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
import numpy as np
import soundfile as sf

from dfnet4.atomic_io import atomic_path, remove_stale_temps
from dfnet4.data.audio import SAMPLE_RATE, list_audio_files, read_audio, resample
from dfnet4.loading import load_checkpoint_model, load_dfn3_model  # noqa: F401 (the CLI's loaders, importable here)

OUTPUT_FORMATS = {"wav": "WAV", "flac": "FLAC"}
# sample formats an output may keep from its input (the lossless ones; a lossy input is decoded to float)
KEEPABLE_SUBTYPES = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
# when the input's sample format is not available in the output format: the lossless choice
FALLBACK_SUBTYPE = {"WAV": "FLOAT", "FLAC": "PCM_24"}


@dataclass
class Job:
    src: Path
    dst: Path


def collect_inputs(paths: list[str], out_dir: str | os.PathLike = ".", fmt: str = "wav") -> list[Job]:
    """One job per input file (folders recursively, their sub-folders kept under `out_dir`), the
    output named after the input with the extension of `fmt`."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"--format: got {fmt!r}, need one of {sorted(OUTPUT_FORMATS)}")
    out_dir, jobs = Path(out_dir), []
    for p in map(Path, paths):
        if p.is_dir():
            files = list_audio_files(p)
            if not files:
                raise ValueError(f"IN: folder {str(p)!r} holds no audio files")
            jobs.extend(Job(f, out_dir / f.relative_to(p).with_suffix("." + fmt)) for f in files)
        elif p.is_file():
            jobs.append(Job(p, out_dir / Path(p.name).with_suffix("." + fmt)))
        else:
            raise ValueError(f"IN: {str(p)!r} does not exist" + (" (a broken symbolic link)" if p.is_symlink() else ""))
    return jobs


def _key(path: Path) -> str:
    """A comparable spelling of a path: symlinks and `..` resolved, case folded where the OS does."""
    return os.path.normcase(os.path.realpath(path))


def check_outputs(jobs: list[Job], overwrite: bool) -> None:
    """Refuse (ValueError, before any work) outputs that would replace an input, that two inputs
    would share, or that exist already without `overwrite`."""
    by_key = {_key(j.src): j.src for j in jobs}
    by_inode = {(st.st_dev, st.st_ino): j.src for j in jobs for st in [os.stat(j.src)]}
    seen: dict[str, Path] = {}
    existing = []
    for j in jobs:
        clash = by_key.get(_key(j.dst))
        if clash is None and os.path.exists(j.dst):  # the same file under another name: os.path.samefile
            st = os.stat(j.dst)
            candidate = by_inode.get((st.st_dev, st.st_ino))
            clash = candidate if candidate is not None and os.path.samefile(j.dst, candidate) else None
        if clash is not None:
            raise ValueError(f"-o: the output for {j.src} would be {j.dst}, which is the input {clash}; "
                             "choose another output folder (or --format)")
        folded = _key(j.dst).casefold()  # also refuse names that differ only in case (one file on macOS)
        if folded in seen:
            raise ValueError(f"IN: {seen[folded]} and {j.src} would both be written to {j.dst} "
                             "(names that differ only in extension or letter case)")
        seen[folded] = j.src
        if os.path.lexists(j.dst):
            existing.append(j.dst)
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise ValueError(f"-o: {len(existing)} output file(s) exist already: {shown}; pass --overwrite to replace "
                         "them (inputs are never replaced)")


def subtype_for(src_subtype: str, fmt: str, requested: str | None = None) -> str:
    """The sample format of an output: `requested` if given (it must exist in `fmt`), else the
    input's when it is lossless and `fmt` has it, else the lossless FALLBACK_SUBTYPE of `fmt`."""
    container = OUTPUT_FORMATS[fmt]
    if requested:
        if not sf.check_format(container, requested):
            raise ValueError(f"--subtype: {requested} is not available in {fmt} files; {fmt} takes "
                             f"{', '.join(s for s in sf.available_subtypes(container) if s in KEEPABLE_SUBTYPES)}")
        return requested
    if src_subtype in KEEPABLE_SUBTYPES and sf.check_format(container, src_subtype):
        return src_subtype
    return FALLBACK_SUBTYPE[container]


def enhance_array(model, audio: np.ndarray, chunk_frames: int = 3000) -> np.ndarray:
    """(channels, samples) at 48 kHz -> enhanced (channels, samples); channels run as one batch.

    Signals longer than `chunk_frames` STFT frames (30 s by default) go through the model's
    streaming API chunk by chunk, which gives the offline output (the model is tested for that)
    while the activations of only one chunk are alive at a time.
    """
    from dfnet4 import dsp

    x = mx.array(np.ascontiguousarray(audio, dtype=np.float32))
    cfg = model.config
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames: got {chunk_frames}, need >= 1")
    if dsp.num_frames(x.shape[1] + cfg.conv_lookahead * cfg.hop_size, cfg.fft_size, cfg.hop_size) <= chunk_frames:
        return np.array(model.enhance(x))
    n = x.shape[1]
    pad = cfg.conv_lookahead * cfg.hop_size  # as model.enhance: the last frames get their lookahead
    spec = dsp.stft(mx.pad(x, [(0, 0), (0, pad)]), cfg.fft_size, cfg.hop_size)
    state = model.init_state(x.shape[0])
    pieces = []
    for start in range(0, spec.shape[1], chunk_frames):
        out, state = model.step(spec[:, start : start + chunk_frames], state)
        mx.eval(out, state)
        pieces.append(out)
    out, _ = model.flush(state)
    pieces.append(out)
    enh = mx.concatenate(pieces, axis=1)
    return np.array(dsp.istft(enh, n + pad, cfg.fft_size, cfg.hop_size)[:, :n])


def enhance_file(model, src: Path, dst: Path, keep_rate: bool = False, chunk_frames: int = 3000,
                 subtype: str | None = None, overwrite: bool = False) -> dict:
    """Enhance `src` into `dst` (format from its extension). `subtype` None keeps the input's sample
    format where possible (subtype_for). The file appears complete or not at all; without
    `overwrite` an existing `dst` is never replaced (FileExistsError)."""
    fmt = dst.suffix.lower().lstrip(".")
    subtype = subtype_for(sf.info(str(src)).subtype, fmt, subtype)
    audio, rate = read_audio(src, SAMPLE_RATE, mono=False)
    enhanced = enhance_array(model, np.atleast_2d(audio), chunk_frames)
    out_rate = rate if keep_rate else SAMPLE_RATE
    if out_rate != SAMPLE_RATE:
        enhanced = resample(enhanced, SAMPLE_RATE, out_rate)
    clipped = int(np.sum(np.abs(enhanced) > 1.0))
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst.parent, f".{dst.name}.tmp-*")  # left by a killed run
    needed = enhanced.size * 8 + 4096  # at most 8 bytes a sample, plus the header
    with atomic_path(dst, needed=needed, suffix=dst.suffix, overwrite=overwrite) as tmp:
        sf.write(str(tmp), np.clip(enhanced, -1.0, 1.0).T, out_rate, subtype=subtype, format=OUTPUT_FORMATS[fmt])
    return {"input": str(src), "output": str(dst), "rate": out_rate, "channels": enhanced.shape[0],
            "seconds": enhanced.shape[1] / out_rate, "clipped_samples": clipped, "subtype": subtype}
