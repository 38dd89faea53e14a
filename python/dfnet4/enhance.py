"""Enhancing audio files with a trained checkpoint or the official DeepFilterNet3 weights.

Outputs never replace an input (whatever the spelling of the path: symlinks, `./`, letter case on
case-insensitive file systems, hard links), replace an existing file only when asked
(`overwrite`), and are written atomically (dfnet4.atomic_io), so an interrupted run leaves no half
file. The output keeps the input's sample format where the output format has it (see `subtype_for`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from dfnet4.atomic_io import atomic_path, remove_stale_temps
from dfnet4.data.audio import SAMPLE_RATE, list_audio_files, read_audio, read_blocks, resample
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


def enhance_array(model, audio: np.ndarray, chunk_frames: int = 3000, runtime_compat: bool = True) -> np.ndarray:
    """(channels, samples) at 48 kHz -> enhanced (channels, samples); channels run as one batch.

    Through `dfnet4.Enhancer` in chunks of `chunk_frames` hops (30 s by default), so that the
    activations of one chunk only are alive at a time; the chunking does not change the result.
    `runtime_compat` (default) starts and gates silence as DeepFilterNet's official runtime does
    and ends with the model's real tail (docs/deploy.md); False gives `model.enhance`'s output.
    """
    from dfnet4.stream import Enhancer

    if chunk_frames < 1:
        raise ValueError(f"chunk_frames: got {chunk_frames}, need >= 1")
    x = np.ascontiguousarray(audio, dtype=np.float32)
    enh = Enhancer(model, channels=x.shape[0], runtime_compat=runtime_compat, compile=False)
    step = chunk_frames * model.config.hop_size
    return np.concatenate([enh.process(x[:, i : i + step]) for i in range(0, x.shape[1], step)] + [enh.flush()],
                          axis=1)


def stream_blocks(model, src: Path, out_rate: int, chunk_frames: int = 3000) -> Iterator[np.ndarray]:
    """Enhanced (channels, samples) blocks at `out_rate` of the file `src`, read, resampled and
    enhanced block by block (`chunk_frames` hops of audio each), so that any length runs in
    constant memory; together they equal enhance_array on the whole file (resampled the same way)."""
    import soxr

    from dfnet4.stream import RESAMPLE_QUALITY, Enhancer

    info = sf.info(str(src))
    to_out = None if info.samplerate == out_rate else soxr.ResampleStream(
        info.samplerate, out_rate, info.channels, dtype="float32", quality=RESAMPLE_QUALITY)
    enh = Enhancer(model, out_rate, channels=info.channels, compile=False)
    block = max(1, chunk_frames * model.config.hop_size * info.samplerate // model.config.sr)
    for x in read_blocks(src, block):
        if to_out is not None:
            x = np.ascontiguousarray(to_out.resample_chunk(np.ascontiguousarray(x.T), last=False).T)
        yield enh.process(x)
    if to_out is not None:
        yield enh.process(np.ascontiguousarray(to_out.resample_chunk(np.zeros((0, info.channels), np.float32),
                                                                     last=True).T))
    yield enh.flush()


def enhance_file(model, src: Path, dst: Path, keep_rate: bool = False, chunk_frames: int = 3000,
                 subtype: str | None = None, overwrite: bool = False, stream: bool = False, progress=None) -> dict:
    """Enhance `src` into `dst` (format from its extension). `subtype` None keeps the input's sample
    format where possible (subtype_for). The file appears complete or not at all; without
    `overwrite` an existing `dst` is never replaced (FileExistsError). `stream`: read, enhance and
    write block by block (stream_blocks) instead of reading the whole file first. `progress`, if
    given, is called with the seconds written by each block (e.g. a tqdm bar's update)."""
    fmt = dst.suffix.lower().lstrip(".")
    info = sf.info(str(src))
    subtype = subtype_for(info.subtype, fmt, subtype)
    out_rate = info.samplerate if keep_rate else SAMPLE_RATE
    if not stream:  # the whole file first: it is read and checked completely before anything is written
        audio, _ = read_audio(src, SAMPLE_RATE, mono=False)
        enhanced = resample(enhance_array(model, np.atleast_2d(audio), chunk_frames), SAMPLE_RATE, out_rate)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst.parent, f".{dst.name}.tmp-*")  # left by a killed run
    # at most 8 bytes a sample, plus the header
    needed = math.ceil(info.frames * out_rate / info.samplerate) * info.channels * 8 + 4096
    done = {"clipped": 0, "frames": 0}

    def to_write(y: np.ndarray) -> np.ndarray:  # (frames, channels) in [-1, 1]; counts what is written
        done["clipped"] += int(np.sum(np.abs(y) > 1.0))
        done["frames"] += y.shape[1]
        if progress is not None:
            progress(y.shape[1] / out_rate)
        return np.clip(y, -1.0, 1.0).T

    with atomic_path(dst, needed=needed, suffix=dst.suffix, overwrite=overwrite) as tmp:
        if stream:  # written as the blocks come; the file appears (renamed) only when complete
            with sf.SoundFile(str(tmp), "w", out_rate, info.channels, subtype=subtype,
                              format=OUTPUT_FORMATS[fmt]) as f:
                for y in stream_blocks(model, src, out_rate, chunk_frames):
                    f.write(to_write(y))
        else:
            sf.write(str(tmp), to_write(enhanced), out_rate, subtype=subtype, format=OUTPUT_FORMATS[fmt])
    return {"input": str(src), "output": str(dst), "rate": out_rate, "channels": info.channels,
            "seconds": done["frames"] / out_rate, "clipped_samples": done["clipped"], "subtype": subtype}
