"""dfnet4.ops.compressed_spectral_loss (fused primitives) against dfnet4.reference.compressed_spectral_loss
(the formula under MLX's autodiff) and float64, complex64 and real-pair inputs, finite differences,
zero loss at the target, NaN, the low-level binding's checks. Compile, views, half precision, thread
count, ISA variants, refused transforms and bad input: the shared contract
(tests/test_fused_op_contract.py, SpectralLossSpec in tests/fused_op_specs.py)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from gradient_check import directional_derivatives
from spectral_loss_cases import GAMMA, as_pairs64, cotangents, make_spectra, vjp
from test_selective_scan_support import assert_close

from dfnet4 import _extension, ops, reference

pytestmark = pytest.mark.skipif(
    not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)"
)

# Pair counts around the kernel's 4096-pair chunks and 16-pair lane groups; the layouts the losses
# use ((batch, frames, bins) complex from rfft, (batch, frames, bins, 2) real from the model).
SHAPES = [(1,), (15,), (4095,), (4096,), (4097,), (3, 17), (8, 300, 129)]
# Against the float64 reference (the truth), as a fraction of each output's largest magnitude.
# Terms: sums of up to 310k values in 16 lanes per 4096-pair chunk, chunks folded in order
# (measured <= 6.3e-7; one value alone 3e-6: |P|^c - |S|^c cancels). Gradients: |X|^(c-1) through a
# polynomial log and exp accurate to ~1e-7 each (measured <= 6.6e-7 of the largest entry; an
# entry's own relative error grows as it shrinks below that, hence the rtol term).
TERMS_TRUTH = dict(rtol=5e-6, atol_scale=0)
GRADS = dict(rtol=2e-5, atol_scale=2e-6)
# The float32 reference's terms are MLX's float32 means over the same values, which drift by up
# to 2.4e-4 at 310k values (measured against float64); the gradients are elementwise (as above).
TERMS_FLOAT32_REFERENCE = dict(rtol=1e-3, atol_scale=0)


def _pairs(g):
    return as_pairs64(g) if g.dtype == mx.complex64 else g


@pytest.mark.parametrize("real_pairs", [False, True], ids=["complex64", "real-pairs"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_terms_and_both_gradients_match_reference(shape, real_pairs, device):
    pred, target = make_spectra(shape, seed=sum(shape), real_pairs=real_pairs)
    cots = cotangents()
    outs, grads = vjp(ops.compressed_spectral_loss, pred, target, cots)
    ref_outs, ref_grads = vjp(reference.compressed_spectral_loss, pred, target, cots)
    with mx.stream(mx.cpu):  # the truth in float64, which only the CPU has
        p64, t64 = (_pairs(a) if a.dtype == mx.complex64 else a.astype(mx.float64) for a in (pred, target))
        true_outs, true_grads = vjp(reference.compressed_spectral_loss, p64, t64, cotangents(mx.float64))
    for name, a, r, t in zip(("mag", "cplx"), outs, ref_outs, true_outs):
        assert a.shape == () and a.dtype == mx.float32
        assert_close(a, t, f"{shape} {name} vs float64", **TERMS_TRUTH)
        assert_close(a, r, f"{shape} {name} vs float32 reference", **TERMS_FLOAT32_REFERENCE)
    for name, g, r, t, primal in zip(("pred", "target"), grads, ref_grads, true_grads, (pred, target)):
        assert g.dtype == primal.dtype and g.shape == primal.shape
        assert_close(_pairs(g), t, f"{shape} d{name} vs float64", **GRADS)
        assert_close(_pairs(g), _pairs(r), f"{shape} d{name} vs float32 reference", **GRADS)


def test_one_gradient_alone_equals_it_computed_with_the_other(device):
    pred, target = make_spectra((5, 700), seed=3)
    cots = cotangents()
    _, (dp, dt) = vjp(ops.compressed_spectral_loss, pred, target, cots)
    (dp_alone,) = mx.vjp(lambda p: ops.compressed_spectral_loss(p, target, GAMMA), [pred], cots)[1]
    (dt_alone,) = mx.vjp(lambda t: ops.compressed_spectral_loss(pred, t, GAMMA), [target], cots)[1]
    assert_close(as_pairs64(dp_alone), as_pairs64(dp), "d pred", rtol=0, atol_scale=0)
    assert_close(as_pairs64(dt_alone), as_pairs64(dt), "d target", rtol=0, atol_scale=0)


@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_matches_reference_and_gradients_match_finite_differences():
    pred, target = make_spectra((3, 40), seed=7, real_pairs=True, dtype=mx.float64)
    cots = cotangents(mx.float64)
    outs, grads = vjp(ops.compressed_spectral_loss, pred, target, cots)
    ref_outs, ref_grads = vjp(reference.compressed_spectral_loss, pred, target, cots)
    # Both in float64 with the library's pow and sqrt: only rounding and summation order differ.
    for name, a, r in zip(("mag", "cplx"), outs, ref_outs):
        assert a.dtype == mx.float64
        assert_close(a, r, name, rtol=1e-13, atol_scale=0)
    for name, g, r in zip(("pred", "target"), grads, ref_grads):
        assert_close(g, r, f"d{name}", rtol=1e-12, atol_scale=1e-13)

    def loss(p, t):
        mag, cplx = ops.compressed_spectral_loss(p, t, GAMMA)
        return cots[0] * mag + cots[1] * cplx

    # the smallest magnitude is ~e^-6: steps of 1e-7 stay far from the kink at 0; truncation
    # O(eps^2), rounding O(1e-16 / eps) ~ 1e-9
    for i, analytic, numeric in directional_derivatives(loss, [pred, target], seed=11, eps=1e-7):
        assert math.isclose(analytic, numeric, rel_tol=1e-6, abs_tol=1e-9), (("pred", "target")[i], analytic, numeric)


def test_zero_loss_at_the_target_and_finite_gradient_at_silence(device):
    pred, _ = make_spectra((3, 50), seed=5)
    mag, cplx = ops.compressed_spectral_loss(pred, pred, GAMMA)
    assert mag.item() == 0 and cplx.item() == 0
    zeros = mx.zeros((2, 10, 2))
    for g in mx.grad(lambda p, t: sum(ops.compressed_spectral_loss(p, t, GAMMA)), argnums=(0, 1))(zeros, zeros + 0.1):
        assert np.all(np.isfinite(np.array(g)))


def test_nan_in_gives_nan_out_without_crashing(device):
    pred, target = make_spectra((2, 5000), seed=6, real_pairs=True)
    p = np.array(pred)
    p[1, 4321, 0] = np.nan
    terms, grads = vjp(ops.compressed_spectral_loss, mx.array(p), target, cotangents())
    assert all(np.isnan(t.item()) for t in terms)
    # a NaN value poisons its own gradient; the others only through the (finite) cotangents
    dp = np.array(grads[0])
    assert np.isnan(dp[1, 4321]).all() and np.isfinite(np.delete(dp.reshape(-1, 2), 5000 + 4321, axis=0)).all()


def test_low_level_binding_checks_too():
    ext = _extension.load()
    with pytest.raises(ValueError, match=r"compressed_spectral_loss: target must have the same dtype as pred"):
        ext.compressed_spectral_loss(mx.zeros((4, 2)), mx.zeros((4, 2), dtype=mx.float64), GAMMA)
    with pytest.raises(ValueError, match=r"compressed_spectral_loss: a real pred must have shape \(\.\.\., 2\)"):
        ext.compressed_spectral_loss(mx.zeros((4, 3)), mx.zeros((4, 3)), GAMMA)
    with pytest.raises(ValueError, match=r"compressed_spectral_loss: gamma must be in \(0, 1\]"):
        ext.compressed_spectral_loss(mx.zeros((4, 2)), mx.zeros((4, 2)), -1.0)


def test_compile_does_not_merge_different_gammas(device):
    pred, target = make_spectra((50,), seed=3)

    def f(p, t):
        return [ops.compressed_spectral_loss(p, t, g)[0] for g in (0.3, 0.5)]

    a, b = mx.compile(f)(pred, target)
    assert a.item() != b.item()
    for x, e in zip((a, b), f(pred, target)):
        assert_close(x, e, "compiled", rtol=0, atol_scale=0)
