"""TEST-ONLY stand-in for dfnet4.model / dfnet4.dsp while the real ones are being written.

It follows the Model/DSP contract of CONTRACTS.md (DfNet4Config with backbone/fused flags,
to_dict/from_dict; DfNet4(config)(spec) -> (enh_spec, {"lsnr", "erb_mask"}); enhance(audio);
dsp.stft/istft at 960/480) with a deliberately small network. `install()` registers it only for
the modules that do not exist yet, so the tests run against the real model as soon as it lands.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn


def _window(n: int) -> mx.array:
    return mx.sqrt(0.5 - 0.5 * mx.cos(2 * mx.pi * mx.arange(n) / n))  # sqrt-Hann: COLA at hop n/2


def stft(audio: mx.array, n_fft: int = 960, hop: int = 480) -> mx.array:
    x = mx.pad(audio, [(0, 0), (hop, hop + (-audio.shape[1]) % hop)])
    frames = 1 + (x.shape[1] - n_fft) // hop
    idx = mx.arange(frames)[:, None] * hop + mx.arange(n_fft)[None]
    spec = mx.fft.rfft(x[:, idx] * _window(n_fft), axis=-1)
    return mx.stack([mx.real(spec), mx.imag(spec)], -1)


def istft(spec: mx.array, length: int, n_fft: int = 960, hop: int = 480) -> mx.array:
    frames = mx.fft.irfft(spec[..., 0] + 1j * spec[..., 1], n=n_fft, axis=-1) * _window(n_fft)
    b, t, _ = frames.shape
    halves = frames.reshape(b, t, 2, hop)
    zero = mx.zeros((b, 1, hop))
    out = mx.concatenate([halves[:, :, 0], zero], 1) + mx.concatenate([zero, halves[:, :, 1]], 1)
    return out.reshape(b, -1)[:, hop : hop + length]


@dataclass
class DfNet4Config:
    backbone: str = "gru"
    fused_scan: bool | None = None
    fused_gru: bool | None = None
    sr: int = 48000
    fft_size: int = 960
    hop_size: int = 480
    nb_erb: int = 32
    nb_df: int = 96
    emb_hidden_dim: int = 32
    emb_num_layers: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DfNet4Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"DfNet4Config: unknown fields {sorted(unknown)}")
        return cls(**d)


class DfNet4(nn.Module):
    def __init__(self, config: DfNet4Config):
        super().__init__()
        from dfnet4 import backbones

        self.config = config
        f = config.fft_size // 2 + 1
        opts = {"num_layers": config.emb_num_layers}
        if config.backbone == "mamba":
            opts["fused"] = config.fused_scan
        elif config.backbone == "gru":
            opts["fused"] = config.fused_gru
        self.inp = nn.Linear(f, 64)
        self.backbone = backbones.create(config.backbone, 64, config.emb_hidden_dim, 64, **opts)
        self.mask = nn.Linear(64, f)
        self.erb = nn.Linear(64, config.nb_erb)
        self.lsnr = nn.Linear(64, 1)

    def __call__(self, spec: mx.array):
        feat = mx.log10(mx.sum(mx.square(spec), -1) + 1e-10)
        h, _ = self.backbone(nn.relu(self.inp(feat)))
        mask = mx.sigmoid(self.mask(h))
        enh = spec * mask[..., None]
        return enh, {"lsnr": self.lsnr(h)[..., 0] * 25 + 10, "erb_mask": mx.sigmoid(self.erb(h))}

    def enhance(self, audio: mx.array) -> mx.array:
        enh, _ = self(stft(audio))
        return istft(enh, audio.shape[-1])


def install() -> None:
    """Register the stand-ins for whichever of dfnet4.model / dfnet4.dsp does not import."""
    for name, attrs in (("dfnet4.dsp", {"stft": stft, "istft": istft}),
                        ("dfnet4.model", {"DfNet4Config": DfNet4Config, "DfNet4": DfNet4})):
        try:
            importlib.import_module(name)
        except ImportError:
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            mod.__dict__["STANDIN"] = True
            sys.modules[name] = mod
            setattr(importlib.import_module("dfnet4"), name.split(".")[1], mod)
