"""Losses and learning-rate schedule."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from dfnet4 import _extension
from dfnet4.train.config import TrainConfig
from dfnet4.train.loop import effective_warmup, lr_schedule
from dfnet4.train.losses import LossConfig, compressed_terms, local_snr_target, stft_frames, total_loss


def test_stft_frames_match_numpy():
    x = np.random.default_rng(0).standard_normal((2, 3000)).astype(np.float32)
    re, im = stft_frames(mx.array(x), 256)
    pad = np.pad(x, [(0, 0), (128, 128)])
    n = 1 + (pad.shape[1] - 256) // 64
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)
    ref = np.fft.rfft(np.stack([pad[:, i * 64 : i * 64 + 256] for i in range(n)], 1) * win, axis=-1)
    # float32 FFT of 256 points of unit-variance data: errors ~1e-5 of values ~10
    np.testing.assert_allclose(np.array(re), ref.real, atol=1e-3)
    np.testing.assert_allclose(np.array(im), ref.imag, atol=1e-3)


@pytest.mark.parametrize("fused", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext is not built")),
], ids=["mlx", "fused"])
def test_compressed_terms_against_numpy_and_zero_at_target(fused):
    rng = np.random.default_rng(1)
    p, t = rng.standard_normal((2, 5, 7)), rng.standard_normal((2, 5, 7))
    pred, target = (mx.array(np.stack([a[0], a[1]], axis=-1), mx.float32) for a in (p, t))  # (..., 2): (re, im)
    mag, cplx = compressed_terms(pred, target, 0.3, fused)
    pc, tc = p[0] + 1j * p[1], t[0] + 1j * t[1]
    ref_mag = np.mean((np.abs(pc) ** 0.3 - np.abs(tc) ** 0.3) ** 2)
    d = pc * np.abs(pc) ** -0.7 - tc * np.abs(tc) ** -0.7
    ref_cplx = (np.mean(d.real**2) + np.mean(d.imag**2)) / 2
    assert mag.item() == pytest.approx(ref_mag, rel=1e-4)  # float32 vs float64 and the 1e-12 eps
    assert cplx.item() == pytest.approx(ref_cplx, rel=1e-4)
    same = compressed_terms(target, target, 0.3, fused)
    assert same[0].item() == 0 and same[1].item() == 0


def test_total_loss_gradient_is_finite_at_silence():
    cfg = LossConfig()
    spec = mx.zeros((1, 4, 481, 2))
    audio = mx.zeros((1, 1920))

    def f(s, a):
        return total_loss(s, spec, spec + 0.1, a, audio, mx.zeros((1, 4)), cfg)[0]

    g_spec, g_audio = mx.grad(f, argnums=(0, 1))(spec, audio)
    assert np.all(np.isfinite(np.array(g_spec))) and np.all(np.isfinite(np.array(g_audio)))


def test_local_snr_target():
    cfg = LossConfig()
    clean = mx.ones((1, 2, 3, 2))
    noisy = clean + mx.array([0.1, 0.0])  # noise power 0.01 per bin vs 1 + 1 -> 23 dB
    snr = np.array(local_snr_target(clean, noisy, cfg))
    np.testing.assert_allclose(snr, 10 * np.log10(2 / 0.01), rtol=1e-4)
    assert np.array(local_snr_target(clean, clean * 10, cfg)).max() <= cfg.lsnr_max


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, min_lr=1e-5)
    sched = lr_schedule(cfg, 100)
    lrs = [sched(mx.array(s)).item() for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4, rel=1e-6) and lrs[10] == pytest.approx(1e-3, rel=1e-6)
    assert np.all(np.diff(lrs[:11]) > 0) and np.all(np.diff(lrs[10:]) < 0)
    assert lrs[-1] == pytest.approx(1e-5, rel=0.2)
    assert effective_warmup(100, 30) == 3 and effective_warmup(10, 30) == 10
