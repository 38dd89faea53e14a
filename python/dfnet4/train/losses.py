"""DeepFilterNet's training losses in MLX.

- spectral loss: MSE of compressed magnitudes |Y|^c vs |S|^c plus MSE of the compressed complex
  spectra Y|Y|^(c-1) vs S|S|^(c-1) (c = 0.3), on the model's own 960/480 spectrum (both terms in
  one fused primitive, dfnet4.ops.compressed_spectral_loss, when the extension is available: on
  the CPU ~10x faster than the formula in MLX ops, and its float32 means are accurate to ~1e-7
  where MLX's float32 mean over a few million terms drifts by ~1e-3);
- multi-resolution STFT loss: the same two terms on STFTs of several sizes of the time signals
  (the enhanced signal is the model spectrum's inverse STFT);
- local-SNR loss: MSE between the model's per-frame SNR estimate and the one measured from clean
  and noise spectra (small weight, as in DeepFilterNet).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from dfnet4 import cpu_streams, ops, reference
from dfnet4.dsp.real_fft import rfft
from dfnet4.ops import _auto
from dfnet4.schema import param, require
from dfnet4.schema import validate as validate_fields


@dataclass
class LossConfig:
    gamma: float = param(0.3, gt=0, le=1)
    spectral_magnitude: float = param(1000.0, ge=0)
    spectral_complex: float = param(1000.0, ge=0)
    mr_magnitude: float = param(500.0, ge=0)
    mr_complex: float = param(500.0, ge=0)
    mr_fft_sizes: list[int] = param(default_factory=lambda: [256, 512, 1024], ge=16, nonempty=False,
                                    check=lambda sizes: None if all(n & (n - 1) == 0 for n in sizes)
                                    else "need powers of two >= 16")
    lsnr: float = param(5e-4, ge=0)
    lsnr_min: float = param(-15.0)
    lsnr_max: float = param(35.0)

    def validate(self) -> None:
        validate_fields(self, "loss.")
        require(self.lsnr_max > self.lsnr_min, "loss.lsnr_max", self.lsnr_max, f"> loss.lsnr_min ({self.lsnr_min:g})")


def compressed_terms(pred: mx.array, target: mx.array, gamma: float, fused: bool | None = None
                     ) -> tuple[mx.array, mx.array]:
    """(magnitude MSE, complex MSE) of the power-law compressed spectra, |X| = sqrt(|X|^2 + 1e-12).

    pred, target: complex arrays, or real (..., 2) arrays holding (re, im). fused=None: the fused
    primitive (dfnet4.ops.compressed_spectral_loss) where the extension has kernels for the
    default device (dfnet4.ops._auto), else the same formula in pure MLX (dfnet4.reference.compressed_spectral_loss);
    True / False force one."""
    if _auto.use_fused(_auto.check(fused, "compressed_terms")):
        return ops.compressed_spectral_loss(pred, target, gamma)
    return reference.compressed_spectral_loss(pred, target, gamma)


def stft_complex(audio: mx.array, n_fft: int) -> mx.array:
    """Hann-windowed STFT with hop n_fft/4 (zero-padded at both ends): (B, frames, n_fft//2+1) complex."""
    hop = n_fft // 4
    pad = n_fft // 2
    x = mx.pad(audio, [(0, 0), (pad, pad)])
    frames = 1 + (x.shape[1] - n_fft) // hop
    # frame f = hop-chunks f..f+3: four shifted views of one reshape (an index gather's VJP is a
    # scatter-add, several times slower on the CPU)
    chunks = x[:, : (frames + 3) * hop].reshape(x.shape[0], frames + 3, hop)
    windows = mx.concatenate([chunks[:, k : k + frames] for k in range(4)], axis=-1)
    window = 0.5 - 0.5 * mx.cos(2 * mx.pi * mx.arange(n_fft) / n_fft)
    return rfft(windows * window)


def stft_frames(audio: mx.array, n_fft: int) -> tuple[mx.array, mx.array]:
    """`stft_complex` as (re, im)."""
    spec = stft_complex(audio, n_fft)
    return mx.real(spec), mx.imag(spec)


def spectral_loss(enh_spec: mx.array, clean_spec: mx.array, cfg: LossConfig, fused: bool | None = None) -> mx.array:
    mag, cplx = compressed_terms(enh_spec, clean_spec, cfg.gamma, fused)
    return cfg.spectral_magnitude * mag + cfg.spectral_complex * cplx


def multires_stft_loss(enh_audio: mx.array, clean_audio: mx.array, cfg: LossConfig,
                       fused: bool | None = None) -> mx.array:
    """The multi-resolution terms, means over the batch, formed row by row (each row's means, then
    their mean in row order: the batch's mean to float32 rounding). On the CPU the rows run in
    pieces on parallel MLX streams (dfnet4.cpu_streams: MLX runs the FFTs and the framing on one
    thread per stream); computed per row, the value does not depend on how many pieces there are."""

    def row_terms(enh, clean):
        return [_multires_terms(enh[i : i + 1], clean[i : i + 1], cfg, fused) for i in range(enh.shape[0])]

    terms = [t for _, piece in cpu_streams.map_pieces(row_terms, enh_audio, clean_audio) for t in piece]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total / len(terms)


def _multires_terms(enh_audio: mx.array, clean_audio: mx.array, cfg: LossConfig, fused: bool | None) -> mx.array:
    total = mx.array(0.0)
    for n_fft in cfg.mr_fft_sizes:
        mag, cplx = compressed_terms(stft_complex(enh_audio, n_fft), stft_complex(clean_audio, n_fft), cfg.gamma,
                                     fused)
        total = total + cfg.mr_magnitude * mag + cfg.mr_complex * cplx
    return total


def local_snr_target(clean_spec: mx.array, noisy_spec: mx.array, cfg: LossConfig) -> mx.array:
    """Per-frame SNR in dB of clean vs (noisy - clean), clipped to the model's lsnr range."""
    noise = noisy_spec - clean_spec
    ps = mx.sum(mx.square(clean_spec), axis=(-1, -2))
    pn = mx.sum(mx.square(noise), axis=(-1, -2))
    snr = 10 * mx.log10((ps + 1e-10) / (pn + 1e-10))
    return mx.clip(snr, cfg.lsnr_min, cfg.lsnr_max)


def lsnr_loss(lsnr: mx.array, clean_spec: mx.array, noisy_spec: mx.array, cfg: LossConfig) -> mx.array:
    """The weighted MSE of the model's local-SNR estimate against the mixture's (a constant target)."""
    target = mx.stop_gradient(local_snr_target(clean_spec, noisy_spec, cfg))
    return cfg.lsnr * mx.mean(mx.square(lsnr - target))


def total_loss(enh_spec, clean_spec, noisy_spec, enh_audio, clean_audio, lsnr, cfg: LossConfig,
               fused: bool | None = None) -> tuple[mx.array, dict]:
    """The weighted sum and its parts (as arrays, for logging). `fused`: see compressed_terms."""
    parts = {}
    if cfg.spectral_magnitude or cfg.spectral_complex:
        parts["spectral"] = spectral_loss(enh_spec, clean_spec, cfg, fused)
    if cfg.mr_fft_sizes and (cfg.mr_magnitude or cfg.mr_complex):
        parts["multires"] = multires_stft_loss(enh_audio, clean_audio, cfg, fused)
    if cfg.lsnr and lsnr is not None:
        parts["lsnr"] = lsnr_loss(lsnr, clean_spec, noisy_spec, cfg)
    total = sum(parts.values()) if parts else mx.array(0.0)
    return total, parts
