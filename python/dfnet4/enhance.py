"""Enhancing audio files with a trained checkpoint or the official DeepFilterNet3 weights."""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx
import numpy as np
import soundfile as sf

from dfnet4.data.audio import SAMPLE_RATE, list_audio_files, read_audio, resample


def load_checkpoint_model(path: str | os.PathLike, log=print):
    """(model in eval mode, checkpoint state) from a checkpoint dir, a checkpoints dir or a run dir.

    The fused flags of the training run are reset to "auto": the weights are the same for the fused
    and the reference kernels, so a checkpoint trained with fused kernels enhances anywhere.
    """
    from dfnet4.train import checkpoint as ckpt
    from dfnet4.train.runtime import model_classes

    ckpt_path, state = ckpt.resolve(path, log)
    Config, Model = model_classes()
    model_cfg = dict(state["model_config"])
    model_cfg["fused_scan"] = model_cfg["fused_gru"] = None
    model = Model(Config.from_dict(model_cfg))
    params, _ = ckpt.load_arrays(ckpt_path)
    model.update(params)
    model.eval()
    return model, {"checkpoint": str(ckpt_path), **state}


def load_dfn3_model():
    """DfNet4 with the official DeepFilterNet3 weights (needs the `dfn3` extra)."""
    try:
        from dfnet4 import convert

        return convert.load_dfn3()
    except ImportError as exc:
        raise RuntimeError(
            f"--dfn3 needs the optional packages of the dfn3 extra (pip install 'dfnet4[dfn3]'): {exc}"
        ) from exc


def collect_inputs(paths: list[str]) -> list[tuple[Path, Path]]:
    """(input file, output path relative to OUTDIR) for files and folders (folders recursively)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            files = list_audio_files(p)
            if not files:
                raise ValueError(f"IN: folder {str(p)!r} holds no audio files")
            out.extend((f, f.relative_to(p).with_suffix(".wav")) for f in files)
        elif p.is_file():
            out.append((p, Path(p.name).with_suffix(".wav")))
        else:
            raise ValueError(f"IN: {str(p)!r} does not exist")
    names = [rel for _, rel in out]
    dupes = sorted({str(n) for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"IN: several inputs would be written to the same output name: {dupes}")
    return out


def enhance_array(model, audio: np.ndarray) -> np.ndarray:
    """(channels, samples) at 48 kHz -> enhanced (channels, samples); channels run as one batch."""
    return np.array(model.enhance(mx.array(np.ascontiguousarray(audio, dtype=np.float32))))


def enhance_file(model, src: Path, dst: Path, keep_rate: bool = False) -> dict:
    audio, rate = read_audio(src, SAMPLE_RATE, mono=False)
    enhanced = enhance_array(model, np.atleast_2d(audio))
    out_rate = rate if keep_rate else SAMPLE_RATE
    if out_rate != SAMPLE_RATE:
        enhanced = resample(enhanced, SAMPLE_RATE, out_rate)
    clipped = int(np.sum(np.abs(enhanced) > 1.0))
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), np.clip(enhanced, -1.0, 1.0).T, out_rate, subtype="PCM_16")
    return {"input": str(src), "output": str(dst), "rate": out_rate, "channels": enhanced.shape[0],
            "seconds": enhanced.shape[1] / out_rate, "clipped_samples": clipped}
