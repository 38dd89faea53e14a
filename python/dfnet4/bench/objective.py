"""What the model-level measurements compute: the inputs of one batch and the loss.

With a model whose config has fft_size/hop_size (DfNet4) and dfnet4.train importable, this is the
training loop's own computation (dfnet4.train.loop.Trainer._forward): clean and noisy audio in,
STFT of both at the model's sizes, model, inverse STFT, DeepFilterNet's loss (spectral +
multi-resolution STFT + local-SNR terms). Otherwise (stand-in models in tests, or dfnet4.train
missing) a spectral L1 on random spectra. `name` says
which, and ends up in every result file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mlx.core as mx
import mlx.nn as nn


@dataclass
class Objective:
    name: str
    make_batch: Callable[[int, int], dict]  # (batch, frames) -> arrays; "noisy_spec" feeds the forward
    loss: Callable[[nn.Module, dict], mx.array]  # (model, batch) -> scalar


def _spectral_l1(freq_bins: int) -> Objective:
    def make_batch(batch: int, frames: int) -> dict:
        shape = (batch, frames, freq_bins, 2)
        clean = mx.random.normal(shape)
        return {"clean_spec": clean, "noisy_spec": clean + mx.random.normal(shape)}

    def loss(model: nn.Module, batch: dict) -> mx.array:
        enh, _ = model(batch["noisy_spec"])
        return mx.mean(mx.abs(enh - batch["clean_spec"]))

    return Objective("spectral L1 on random spectra (mean |enhanced - clean| over re/im)", make_batch, loss)


def describe_loss(cfg) -> str:
    """The terms and weights of a dfnet4.train.losses.LossConfig, in words."""
    terms = []
    if cfg.spectral_magnitude or cfg.spectral_complex:
        terms.append(f"960-point spectral {cfg.spectral_magnitude:g}/{cfg.spectral_complex:g}")
    if cfg.mr_fft_sizes and (cfg.mr_magnitude or cfg.mr_complex):
        sizes = "/".join(str(n) for n in cfg.mr_fft_sizes)
        terms.append(f"multi-resolution STFT {sizes} points {cfg.mr_magnitude:g}/{cfg.mr_complex:g}")
    if cfg.lsnr:
        terms.append(f"local SNR {cfg.lsnr:g}")
    return f"{' + '.join(terms)} (magnitude/complex weights, gamma {cfg.gamma:g})"


def _deepfilternet(fft: int, hop: int, loss_config: dict | None = None, loss_fused: bool | None = None) -> Objective:
    from dfnet4.dsp import istft, stft
    from dfnet4.train.losses import LossConfig, total_loss

    cfg = LossConfig(**(loss_config or {}))
    cfg.validate()

    def make_batch(batch: int, frames: int) -> dict:
        samples = hop * (frames - 1)  # the STFT gives samples // hop + 1 frames
        clean = 0.1 * mx.random.normal((batch, samples))
        noisy = clean + 0.05 * mx.random.normal((batch, samples))
        return {"clean_audio": clean, "noisy_audio": noisy, "noisy_spec": stft(noisy, fft, hop)}

    def loss(model: nn.Module, batch: dict) -> mx.array:
        clean, noisy = batch["clean_audio"], batch["noisy_audio"]
        clean_spec, noisy_spec = stft(clean, fft, hop), stft(noisy, fft, hop)
        enh_spec, aux = model(noisy_spec)
        enh_audio = istft(enh_spec, clean.shape[-1], fft, hop)
        value, _ = total_loss(enh_spec, clean_spec, noisy_spec, enh_audio, clean, aux.get("lsnr"), cfg, loss_fused)
        return value

    weights = "default weights" if not loss_config else f"weights {loss_config}"
    return Objective(
        f"DeepFilterNet loss of dfnet4.train ({weights}: {describe_loss(cfg)}), "
        "computed as the training loop does: audio -> STFT -> model -> iSTFT -> loss",
        make_batch,
        loss,
    )


def resolve(model: nn.Module, default_freq_bins: int = 481, loss_config: dict | None = None,
            loss_fused: bool | None = None) -> Objective:
    """`loss_config`: LossConfig fields that differ from dfnet4-train's defaults (ValueError if invalid);
    `loss_fused`: the spectral terms' implementation (dfnet4.train.losses.compressed_terms)."""
    config = getattr(model, "config", None)
    fft, hop = getattr(config, "fft_size", None), getattr(config, "hop_size", None)
    if isinstance(fft, int) and isinstance(hop, int):
        try:
            return _deepfilternet(fft, hop, loss_config, loss_fused)
        except ImportError:
            pass
    return _spectral_l1(fft // 2 + 1 if isinstance(fft, int) else default_freq_bins)
