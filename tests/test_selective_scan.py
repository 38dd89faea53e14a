"""dfnet4.ops.selective_scan (fused primitives) against dfnet4.reference.selective_scan (MLX loop):
every output and gradient over many shapes, float64 against numpy and finite differences, NaN and
extreme inputs, memory, the kernel's exp and softplus. What every fused op keeps (compile, views,
half and float64 inputs, threads, bad input, refused transforms): tests/test_fused_op_contract.py."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from gradient_check import directional_derivatives
from test_selective_scan_support import ALL_OPTIONS, OPTIONAL, assert_close, make_inputs

from dfnet4 import _extension, ops, reference

pytestmark = pytest.mark.skipif(
    not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)"
)

NAMES = ("u", "delta", "A", "B", "C") + OPTIONAL


def _fn(scan, names, softplus):
    def f(*arrays):
        return scan(**dict(zip(names, arrays)), delta_softplus=softplus, return_last_state=True)

    return f


def _cotangents(kwargs, seed=1):
    u = kwargs["u"]
    b, _, d = u.shape
    n = kwargs["A"].shape[1]
    rng = np.random.default_rng(seed)
    return [
        mx.array(rng.standard_normal(u.shape)).astype(u.dtype),
        mx.array(rng.standard_normal((b, d, n))).astype(u.dtype),
    ]


def _vjp(scan, kwargs, softplus, cotangents):
    names = [k for k in NAMES if k in kwargs]
    outs, grads = mx.vjp(_fn(scan, names, softplus), [kwargs[k] for k in names], cotangents)
    return outs, dict(zip(names, grads))


# A covering set of the grid of issue 2: every time length (1, 2, 7, 64, 127, 500, 1024), channel
# counts below/at/above multiples of 32 (channel blocks of the dB/dC reductions), states 1, 4, 16
# plus 17 and 64 (the runtime-size kernel variant), each optional argument both on and off, h0 given
# or not, batch 1 and > 1. Long sequences use few channels to keep the reference loop fast.
CASES = [
    # batch, time, channels, state, options
    (1, 1, 3, 1, frozenset()),
    (2, 2, 5, 4, ALL_OPTIONS),
    (3, 7, 33, 16, frozenset({"D", "z"})),
    (2, 64, 40, 16, ALL_OPTIONS),
    (1, 127, 32, 4, frozenset({"delta_bias", "softplus", "h0"})),
    (2, 500, 6, 16, ALL_OPTIONS),
    (1, 1024, 3, 4, frozenset({"softplus", "D", "h0"})),
    (2, 17, 70, 1, frozenset({"z", "h0"})),
    (1, 33, 6, 17, ALL_OPTIONS),
    (2, 20, 9, 64, frozenset({"D", "softplus"})),
    (1, 16, 4, 16, frozenset({"z", "delta_bias"})),
    (2, 48, 2, 4, frozenset({"h0"})),
]


def _case_id(case):
    b, t, d, n, opts = case
    return f"b{b}-t{t}-d{d}-n{n}-" + ("+".join(sorted(opts)) or "plain")


def _check_against_reference(batch, time, channels, state, options, seed):
    kwargs, softplus = make_inputs(batch, time, channels, state, options, seed=seed)
    cot = _cotangents(kwargs)
    (out, last), grads = _vjp(ops.selective_scan, kwargs, softplus, cot)
    (ref_out, ref_last), ref_grads = _vjp(reference.selective_scan, kwargs, softplus, cot)
    # float32 throughout; the fused op sums over state in a different order and uses its own exp,
    # so agreement is to a few hundred float32 ulps of the largest value, not bitwise.
    assert_close(out, ref_out, "out")
    assert_close(last, ref_last, "last_state")
    assert set(grads) == set(ref_grads)
    for name in grads:
        assert grads[name].dtype == kwargs[name].dtype
        assert_close(grads[name], ref_grads[name], f"d{name}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_and_every_gradient_match_reference(case, device):
    batch, time, channels, state, options = case
    _check_against_reference(batch, time, channels, state, options, seed=time + channels)


# The CPU runs 16 neighbouring channels per vector and the channels a 32-channel block has left
# over (channels % 16) one at a time, both adding into the block's dB/dC partials: every leftover
# count 0..15 next to a full vector group (16..32 channels), and vectors with a runtime state count
# below and above 16 (the other kernel variants).
LANE_CASES = [(channels, 16) for channels in range(16, 33)] + [(21, 5), (20, 17), (35, 64)]


@pytest.mark.parametrize("channels,state", LANE_CASES)
def test_vector_channel_groups_and_leftover_channels_match_reference(channels, state, device):
    _check_against_reference(2, 21, channels, state, ALL_OPTIONS, seed=channels + state)


def test_gradient_without_last_state_output(device):
    # Only `out` used (the last_state cotangent is MLX's implicit zeros); loss is not linear in out.
    kwargs, softplus = make_inputs(2, 40, 35, 16, ALL_OPTIONS, seed=3)
    names = list(kwargs)

    def loss(scan):
        def f(*arrays):
            out = scan(**dict(zip(names, arrays)), delta_softplus=softplus)
            return (out * mx.tanh(out)).sum()

        return f

    argnums = tuple(range(len(names)))
    fused = mx.grad(loss(ops.selective_scan), argnums=argnums)(*kwargs.values())
    ref = mx.grad(loss(reference.selective_scan), argnums=argnums)(*kwargs.values())
    for name, g, r in zip(names, fused, ref):
        assert_close(g, r, f"d{name}")


def _numpy_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, h0=None, softplus=False):
    """float64 numpy loop: an oracle independent of MLX (whose float64 exp is float32-accurate)."""
    dt = delta + (0 if delta_bias is None else delta_bias)
    if softplus:
        dt = np.logaddexp(dt, 0.0)
    h = np.zeros((u.shape[0], u.shape[2], A.shape[1])) if h0 is None else h0.copy()
    ys = []
    for t in range(u.shape[1]):
        h = np.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append(np.einsum("bdn,bn->bd", h, C[:, t]))
    y = np.stack(ys, axis=1) + (0 if D is None else D * u)
    if z is not None:
        y = y * z / (1 + np.exp(-z))
    return y, h


@pytest.mark.parametrize("softplus", [True, False])
@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_forward_matches_numpy_and_gradients_match_finite_differences(softplus):
    options = ALL_OPTIONS if softplus else ALL_OPTIONS - {"softplus"}
    kwargs, softplus = make_inputs(2, 19, 5, 3, options, seed=7, dtype=mx.float64)
    names = list(kwargs)
    out, last = ops.selective_scan(**kwargs, delta_softplus=softplus, return_last_state=True)
    ref_out, ref_last = _numpy_scan(**{k: np.array(v) for k, v in kwargs.items()}, softplus=softplus)
    assert out.dtype == mx.float64
    # Both compute in float64 with library exp/log: only rounding differences remain.
    assert_close(out, ref_out, "out", rtol=1e-11, atol_scale=1e-12)
    assert_close(last, ref_last, "last_state", rtol=1e-11, atol_scale=1e-12)

    cot_out, cot_last = (c.astype(mx.float64) for c in _cotangents(kwargs, seed=5))

    def loss(*arrays):
        o, l = ops.selective_scan(
            **dict(zip(names, arrays)), delta_softplus=softplus, return_last_state=True
        )
        return (o * cot_out).sum() + (l * cot_last).sum()

    for i, analytic, numeric in directional_derivatives(loss, list(kwargs.values()), seed=11):
        assert math.isclose(analytic, numeric, rel_tol=1e-6, abs_tol=1e-8), (names[i], analytic, numeric)


def test_nan_in_gives_nan_out_without_crashing(device):
    kwargs, softplus = make_inputs(2, 40, 36, 16, ALL_OPTIONS, seed=5)
    u = np.array(kwargs["u"])
    u[1, 10, 3] = np.nan
    kwargs["u"] = mx.array(u)
    cot = _cotangents(kwargs)
    (out, last), grads = _vjp(ops.selective_scan, kwargs, softplus, cot)
    (_, _), ref_grads = _vjp(reference.selective_scan, kwargs, softplus, cot)
    out, last = np.array(out), np.array(last)
    # The NaN enters channel 3 of batch 1 at step 10 and stays in its state from then on.
    assert np.all(np.isnan(out[1, 10:, 3]))
    assert np.isnan(last[1, 3]).all()
    mask = np.ones(out.shape, bool)
    mask[1, 10:, 3] = False
    assert np.all(np.isfinite(out[mask]))
    # Gradients: NaN exactly where the autodiffed reference has NaN (e.g. dz, dA, dB; not du,
    # whose adjoint does not depend on u).
    assert np.isnan(np.array(grads["z"])).any()
    for name in grads:
        assert np.array_equal(np.isnan(np.array(grads[name])), np.isnan(np.array(ref_grads[name]))), name

    kwargs2, _ = make_inputs(1, 8, 4, 4, ALL_OPTIONS, seed=6)
    kwargs2["delta"] = mx.full(kwargs2["delta"].shape, float("nan"))
    assert np.isnan(np.array(ops.selective_scan(**kwargs2, delta_softplus=True))).all()
    kwargs2["A"] = mx.full(kwargs2["A"].shape, float("nan"))
    kwargs2["delta"] = mx.ones(kwargs2["delta"].shape)
    assert np.isnan(np.array(ops.selective_scan(**kwargs2, delta_softplus=False))).all()


@pytest.mark.parametrize("softplus", [True, False])
def test_very_large_delta_stays_finite(softplus, device):
    kwargs, _ = make_inputs(2, 50, 8, 16, ALL_OPTIONS - {"softplus"}, seed=8)
    kwargs["delta"] = mx.full(kwargs["delta"].shape, 1e4)  # exp(dt * A) underflows to exactly 0
    names = list(kwargs)
    (out, last), grads = _vjp(ops.selective_scan, kwargs, softplus, _cotangents(kwargs))
    for name, x in [("out", out), ("last", last)] + [(f"d{k}", grads[k]) for k in names]:
        assert np.all(np.isfinite(np.array(x))), name
    # With the decay at 0 the state is just the drive: h_t = dt * B_t * u_t.
    dt = 1e4 + kwargs["delta_bias"]
    expected_last = (dt * kwargs["u"][:, -1])[:, :, None] * kwargs["B"][:, -1][:, None, :]
    assert_close(last, expected_last, "last_state", rtol=1e-5, atol_scale=1e-6)


@pytest.mark.cpu_only("peak-memory bound measured with the CPU backend's buffer lifetimes")
def test_no_batch_time_channels_state_allocation():
    # Peak memory of a fused forward+backward stays well below one (batch, time, channels, state)
    # float32 array (the reference loop's peak is ~3x one, the Hillis-Steele scan's many times):
    # checkpoints are 1/16 of it, the dB/dC block partials 2/32, all else is 3-D (measured: ~0.23).
    batch, time, channels, state = 2, 512, 128, 64
    kwargs, softplus = make_inputs(batch, time, channels, state, ALL_OPTIONS, seed=10)
    mx.eval(kwargs)
    names = list(kwargs)
    four_d_bytes = batch * time * channels * state * 4
    grad = mx.grad(
        lambda *a: ops.selective_scan(**dict(zip(names, a)), delta_softplus=softplus).sum(),
        argnums=tuple(range(len(names))),
    )
    mx.eval(grad(*kwargs.values()))  # warm up allocator caches
    mx.synchronize()
    baseline = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(grad(*kwargs.values()))
    used = mx.get_peak_memory() - baseline
    assert 0 < used < four_d_bytes / 2, (used, four_d_bytes)


def _one_step(A, delta, h0, B, softplus):
    """out of a 1-step, 1-state scan over `k` channels, batch 1: exp(dt*A)*h0 + dt*B (u = C = 1)."""
    k = A.shape[0]
    ones = mx.ones((1, 1, k))
    return ops.selective_scan(
        ones, mx.array(delta).reshape(1, 1, k), mx.array(A).reshape(k, 1), mx.full((1, 1, 1), B),
        mx.ones((1, 1, 1)), h0=mx.full((1, k, 1), h0), delta_softplus=softplus,
    ).reshape(k)


def test_kernel_exp_and_softplus_accuracy(device):
    # exp(A) exactly as the kernel computes it: one step with dt = 1, B = 0, h0 = 1.
    special = np.array([-1e4, -87.0, -np.inf, 0.0, np.nan, 89.0, np.inf], np.float32)
    x = np.concatenate([np.linspace(-86.9, 88.0, 200_001), special]).astype(np.float32)
    got = np.array(_one_step(x, np.ones_like(x), 1.0, 0.0, False))
    want = np.exp(x.astype(np.float64))
    finite = np.arange(x.size) < x.size - special.size  # the linspace over [-86.9, 88]
    ulp = np.spacing(want[finite].astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got[finite] - want[finite]) / ulp) <= 1.5  # the docs say 1.03 ulp measured
    s = got[finite.size - special.size :]
    assert s[0] == 0.0 and s[1] == 0.0 and s[2] == 0.0  # far below the range: exactly 0
    assert s[3] == 1.0 and np.isnan(s[4]) and s[5] == np.inf and s[6] == np.inf

    # softplus(delta) as the kernel computes it: A = 0, h0 = 0, B = 1, so out = dt.
    d = np.concatenate([np.linspace(-30.0, 30.0, 100_001), [1e30, -1e30, np.nan]]).astype(np.float32)
    got = np.array(_one_step(np.zeros_like(d), d, 0.0, 1.0, True))
    want = np.logaddexp(d[:-3].astype(np.float64), 0.0)
    # Relative to max(value, 1): log(1 + e) in float32 loses e < 2^-24 absolutely, by design.
    err = np.abs(got[:-3] - want) / np.maximum(want, 1.0)
    assert err.max() <= 4 * 2.0**-24
    assert got[-3] == np.float32(1e30) and got[-2] == 0.0 and np.isnan(got[-1])
