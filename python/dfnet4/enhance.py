"""Enhancing audio files with a trained checkpoint or the official DeepFilterNet3 weights."""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
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
    # the expanded config pins every size even if DfNet4Config's defaults change later
    model_cfg = dict(state.get("model_config_full") or state["model_config"])
    model_cfg["fused_scan"] = model_cfg["fused_gru"] = None
    model = Model(Config.from_dict(model_cfg))
    params, _ = ckpt.load_arrays(ckpt_path)
    try:
        model.load_weights(tree_flatten(params), strict=True)
    except ValueError as exc:
        raise ckpt.CheckpointError(f"{ckpt_path}: the weights do not fit the model: {exc}") from exc
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


def enhance_file(model, src: Path, dst: Path, keep_rate: bool = False, chunk_frames: int = 3000) -> dict:
    audio, rate = read_audio(src, SAMPLE_RATE, mono=False)
    enhanced = enhance_array(model, np.atleast_2d(audio), chunk_frames)
    out_rate = rate if keep_rate else SAMPLE_RATE
    if out_rate != SAMPLE_RATE:
        enhanced = resample(enhanced, SAMPLE_RATE, out_rate)
    clipped = int(np.sum(np.abs(enhanced) > 1.0))
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), np.clip(enhanced, -1.0, 1.0).T, out_rate, subtype="PCM_16")
    return {"input": str(src), "output": str(dst), "rate": out_rate, "channels": enhanced.shape[0],
            "seconds": enhanced.shape[1] / out_rate, "clipped_samples": clipped}
