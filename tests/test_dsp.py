"""dfnet4.dsp against libdf (DeepFilterNet's Rust feature code) and against plain loops."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from speechlike import mixture

from dfnet4 import dsp

try:
    import libdf
except ImportError:  # optional: the `dfn3` extra
    libdf = None
needs_libdf = pytest.mark.skipif(libdf is None, reason="deepfilterlib (libdf) not installed: pip install deepfilterlib")

SR, FFT, HOP, NB_ERB, NB_DF = 48000, 960, 480, 32, 96
ALPHA = 0.99  # libdf's norm alpha for tau = 1 s at hop 10 ms


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return mixture(seconds=3.0, snr_db=5.0)[None]  # 300 frames: several 64-frame blocks of the scan


def _cplx(spec: mx.array) -> np.ndarray:
    s = np.array(spec)
    return s[..., 0] + 1j * s[..., 1]


def test_window_and_alpha():
    w = np.array(dsp.vorbis_window())
    assert np.allclose(w[:HOP] ** 2 + w[HOP:] ** 2, 1.0, atol=1e-6)  # Princen-Bradley
    assert dsp.norm_alpha(SR, HOP, 1.0) == pytest.approx(0.99)


@needs_libdf
def test_window_matches_libdf():
    ref = libdf.DF(SR, FFT, HOP, NB_ERB, 2).fft_window()
    np.testing.assert_allclose(np.array(dsp.vorbis_window()), ref, rtol=0, atol=1e-7)


@needs_libdf
@pytest.mark.parametrize("cfg", [(48000, 960, 32, 2), (48000, 960, 24, 1), (16000, 320, 32, 1), (48000, 1920, 32, 2)])
def test_erb_widths_match_libdf(cfg):
    sr, fft, nb, mn = cfg
    ref = libdf.DF(sr, fft, fft // 2, nb, mn).erb_widths()
    assert dsp.erb_widths(sr, fft, nb, mn) == tuple(int(v) for v in ref)


def test_perfect_reconstruction():
    x = mx.random.normal((3, 4321), key=mx.random.key(0))
    spec = dsp.stft(x)
    assert spec.shape == (3, dsp.num_frames(4321), FFT // 2 + 1, 2)
    # float32 FFT round trip of unit-variance noise: errors ~1e-7 per sample
    np.testing.assert_allclose(np.array(dsp.istft(spec, 4321)), np.array(x), atol=2e-6)


@needs_libdf
def test_stft_matches_libdf_analysis(audio):
    ref = libdf.DF(SR, FFT, HOP, NB_ERB, 2).analysis(audio)  # (1, T, F): frame t ends at sample (t+1)*hop
    ours = _cplx(dsp.stft(mx.array(audio)))[:, : ref.shape[1]]
    # two float32 FFTs of the same windowed frame: relative error ~1e-6 of the frame's peak bin
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


@needs_libdf
def test_istft_matches_libdf_synthesis(audio):
    spec = dsp.stft(mx.array(audio))
    n = audio.shape[1]
    ref = libdf.DF(SR, FFT, HOP, NB_ERB, 2).synthesis(_cplx(spec).astype(np.complex64))
    ours = np.array(dsp.istft(spec, n))
    # libdf's streaming synthesis outputs each sample one hop later
    np.testing.assert_allclose(ours[:, : n - HOP], ref[:, HOP:n], atol=1e-6)


@needs_libdf
def test_erb_features_match_libdf(audio):
    widths = dsp.erb_widths()
    spec = dsp.stft(mx.array(audio))
    t = audio.shape[1] // HOP
    ref_db = libdf.erb(_cplx(spec)[:, :t].astype(np.complex64), np.array(widths, dtype=np.uint64))
    db = dsp.erb_energy_db(spec, widths)[:, :t]
    np.testing.assert_allclose(np.array(db), ref_db, atol=2e-4)  # dB of float32 band powers
    ref = libdf.erb_norm(ref_db.copy(), ALPHA)
    feat, state = dsp.erb_norm(mx.array(ref_db), ALPHA)
    # libdf's float32 recursion rounds at ulp(-60 dB) ~ 4e-6 each frame; over the ~100-frame memory
    # that random-walks to ~1e-4 dB in the mean, i.e. a few 1e-6 in the feature (/40)
    np.testing.assert_allclose(np.array(feat), ref, atol=1e-5)
    assert state.shape == (1, NB_ERB)


@needs_libdf
def test_unit_norm_matches_libdf(audio):
    spec = dsp.stft(mx.array(audio))[:, :, :NB_DF]
    ref = libdf.unit_norm(_cplx(spec).astype(np.complex64), ALPHA)
    feat, _ = dsp.unit_norm(spec, ALPHA)
    np.testing.assert_allclose(np.array(dsp.unit_norm_init(NB_DF)), libdf.unit_norm_init(NB_DF)[0], rtol=1e-6)
    np.testing.assert_allclose(_cplx(feat), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@needs_libdf
def test_erb_mask_expansion_matches_libdf():
    widths = dsp.erb_widths()
    mask = np.random.default_rng(0).uniform(0, 1, (1, 7, NB_ERB)).astype(np.float32)
    ones = mx.ones((1, 7, FFT // 2 + 1, 2))
    ours = np.array(dsp.apply_erb_mask(ones, mx.array(mask), widths))[..., 0]
    np.testing.assert_allclose(ours, libdf.erb_inv(mask, np.array(widths, dtype=np.uint64)), atol=1e-7)


def test_unit_mask_is_identity_at_all_frequencies():
    # the upstream fault: a column-normalised inverse filterbank turned a gain of 1 into 1/width
    spec = mx.random.normal((2, 5, FFT // 2 + 1, 2))
    out = dsp.apply_erb_mask(spec, mx.ones((2, 5, NB_ERB)), dsp.erb_widths())
    assert mx.array_equal(out, spec)


@pytest.mark.parametrize("t", [1, 17, 64, 65, 300, 4200])
@pytest.mark.parametrize("alpha", [0.99, 0.9])
def test_exponential_mean_matches_loop(t, alpha):
    rng = np.random.default_rng(t)
    x = rng.standard_normal((2, t, 3))
    s0 = rng.standard_normal((2, 3))
    ref = np.empty_like(x)
    s = s0.copy()
    for i in range(t):
        s = alpha * s + (1 - alpha) * x[:, i]
        ref[:, i] = s
    out = dsp.exponential_mean(mx.array(x.astype(np.float32)), alpha, mx.array(s0.astype(np.float32)))
    np.testing.assert_allclose(np.array(out), ref, atol=2e-5)  # float32 block products


def test_norm_states_continue_a_stream(audio):
    spec = dsp.stft(mx.array(audio))
    db = dsp.erb_energy_db(spec, dsp.erb_widths())
    whole, _ = dsp.erb_norm(db, ALPHA)
    a, st = dsp.erb_norm(db[:, :100], ALPHA)
    b, _ = dsp.erb_norm(db[:, 100:], ALPHA, st)
    np.testing.assert_allclose(np.array(mx.concatenate([a, b], 1)), np.array(whole), atol=1e-6)
    whole, _ = dsp.unit_norm(spec[:, :, :NB_DF], ALPHA)
    a, st = dsp.unit_norm(spec[:, :130, :NB_DF], ALPHA)
    b, _ = dsp.unit_norm(spec[:, 130:, :NB_DF], ALPHA, st)
    np.testing.assert_allclose(np.array(mx.concatenate([a, b], 1)), np.array(whole), rtol=1e-5, atol=1e-6)


def _deep_filter_loop(spec, coefs, lookahead):
    b, t, f, order = coefs.shape[:4]
    x = spec[..., 0] + 1j * spec[..., 1]
    c = coefs[..., 0] + 1j * coefs[..., 1]
    y = np.zeros((b, t, f), complex)
    for ti in range(t):
        for n in range(order):
            src = ti + n - (order - 1 - lookahead)
            if 0 <= src < t:
                y[:, ti] += x[:, src] * c[:, ti, :, n]
    return np.stack([y.real, y.imag], -1)


@pytest.mark.parametrize("lookahead", [0, 2])
def test_deep_filter_matches_loop_and_streams(lookahead):
    rng = np.random.default_rng(lookahead)
    spec = rng.standard_normal((2, 11, 6, 2)).astype(np.float32)
    coefs = rng.standard_normal((2, 11, 6, 5, 2)).astype(np.float32)
    out = dsp.deep_filter(mx.array(spec), mx.array(coefs), lookahead)
    np.testing.assert_allclose(np.array(out), _deep_filter_loop(spec, coefs, lookahead), atol=1e-5)
    # piecewise: frames 0..5 then 6..10, with the preceding frames as history
    hist = mx.zeros((2, 4, 6, 2))
    s = mx.array(np.concatenate([spec, np.zeros_like(spec[:, :lookahead])], 1))
    first = dsp.deep_filter(s[:, : 6 + lookahead], mx.array(coefs[:, :6]), lookahead, hist)
    hist2 = mx.concatenate([hist, s[:, :6]], 1)[:, -4:]
    second = dsp.deep_filter(s[:, 6 : 11 + lookahead], mx.array(coefs[:, 6:]), lookahead, hist2)
    np.testing.assert_allclose(np.array(mx.concatenate([first, second], 1)), np.array(out), atol=1e-6)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="audio"):
        dsp.stft(mx.zeros((10,)))
    with pytest.raises(ValueError, match="spec"):
        dsp.istft(mx.zeros((1, 4, 480, 2)), 960)
    with pytest.raises(ValueError, match="coefs"):
        dsp.deep_filter(mx.zeros((1, 4, 6, 2)), mx.zeros((1, 4, 6, 5)), 2)
    with pytest.raises(ValueError, match="spec"):
        dsp.deep_filter(mx.zeros((1, 4, 7, 2)), mx.zeros((1, 4, 6, 5, 2)), 2)
    with pytest.raises(ValueError, match="mask"):
        dsp.apply_erb_mask(mx.zeros((1, 4, 481, 2)), mx.zeros((1, 4, 31)), dsp.erb_widths())
    with pytest.raises(ValueError, match="fft_size"):
        dsp.stft(mx.zeros((1, 100)), fft_size=1000, hop_size=480)
