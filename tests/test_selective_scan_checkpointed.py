"""dfnet4.ops.selective_scan_checkpointed and selective_scan_backward (the pair the recomputing Mamba
block calls) against selective_scan and its mx.vjp: the same checkpoints, last state and gradients
(bit for bit: the same kernels on the same inputs), and the forward's output re-formed by the
backward; float64, views, mx.compile, bad input, refused differentiation."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from test_selective_scan_support import ALL_OPTIONS, OPTIONAL, assert_close, make_inputs

from dfnet4 import _extension, ops

pytestmark = pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)")

NAMES = ("u", "delta", "A", "B", "C") + OPTIONAL
GRADS = ("u", "delta", "A", "B", "C", "h0", "z", "D", "delta_bias")

# batch, time, channels, state, options: one and several checkpoint chunks (16 steps) with a
# partial last one, vector groups and leftover channels, the three kernel variants (state 16,
# < 16, > 16), each optional argument on and off
CASES = [
    (2, 37, 40, 16, ALL_OPTIONS),
    (1, 1, 3, 1, frozenset()),
    (2, 16, 33, 4, frozenset({"z"})),
    (3, 50, 17, 17, frozenset({"D", "softplus", "h0"})),
    (1, 20, 16, 16, frozenset({"delta_bias", "z", "softplus"})),
]


def _cotangents(kwargs, seed=1):
    b, _, d = kwargs["u"].shape
    rng = np.random.default_rng(seed)
    dtype = kwargs["u"].dtype
    return (mx.array(rng.standard_normal((b, kwargs["u"].shape[1], d))).astype(dtype),
            mx.array(rng.standard_normal((b, d, kwargs["A"].shape[1]))).astype(dtype))


def _split(kwargs):
    """(the backward's keyword options, h0 or None)."""
    return {k: kwargs[k] for k in ("D", "z", "delta_bias") if k in kwargs}, kwargs.get("h0")


def _vjp_of_the_op(kwargs, softplus, d_out, d_last):
    names = [k for k in NAMES if k in kwargs]

    def f(*arrays):
        return ops.selective_scan(**dict(zip(names, arrays)), delta_softplus=softplus, return_last_state=True)

    outs, grads = mx.vjp(f, [kwargs[k] for k in names], [d_out, d_last])
    return outs, dict(zip(names, grads))


def _pair(kwargs, softplus, d_out, d_last):
    options, h0 = _split(kwargs)
    core = [kwargs[k] for k in ("u", "delta", "A", "B", "C")]
    out, last, checkpoints = ops.selective_scan_checkpointed(*core, **options, delta_softplus=softplus, h0=h0)
    y, grads = ops.selective_scan_backward(*core, checkpoints, d_out, d_last, **options, delta_softplus=softplus)
    return out, last, checkpoints, y, grads


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}-t{c[1]}-d{c[2]}-n{c[3]}-" + "+".join(sorted(c[4])))
def test_pair_gives_the_ops_outputs_and_gradients(case, device):
    batch, time, channels, state, options = case
    kwargs, softplus = make_inputs(batch, time, channels, state, options, seed=time + channels)
    d_out, d_last = _cotangents(kwargs)
    (want_out, want_last), want_grads = _vjp_of_the_op(kwargs, softplus, d_out, d_last)
    out, last, checkpoints, y, grads = _pair(kwargs, softplus, d_out, d_last)

    assert np.array_equal(np.array(out), np.array(want_out)) and np.array_equal(np.array(last), np.array(want_last))
    assert checkpoints.shape == (batch, -(-time // _extension.load().SELECTIVE_SCAN_CHUNK), state, channels)
    # every gradient: the vjp runs the same backward kernel on the same checkpoints
    assert set(grads) == set(want_grads) | {"h0"}
    for name, g in grads.items():
        want = want_grads.get(name)
        if want is None:  # no h0 given: the gradient of the zero initial state the scan starts from
            assert name == "h0" and g.shape == (batch, channels, state)
            continue
        assert g.dtype == want.dtype and np.array_equal(np.array(g), np.array(want)), name
    # The re-formed output: the backward recomputes each chunk's states from its checkpoint as
    # exp(dt A) h, rounded and kept for the adjoint, plus the drive, where the forward may fuse the
    # two into one FMA: one rounding apart per step, over at most 16 steps from an exact state
    # (measured ~2e-7 of max|out|). Bound: 1e-5, the emulator-vs-CPU tolerance of this op.
    assert_close(y, want_out, "out re-formed", rtol=1e-5, atol_scale=1e-5)


@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_pair_matches_the_op():
    kwargs, softplus = make_inputs(2, 40, 21, 16, ALL_OPTIONS, seed=5, dtype=mx.float64)
    d_out, d_last = _cotangents(kwargs)
    (want_out, _), want_grads = _vjp_of_the_op(kwargs, softplus, d_out, d_last)
    out, _, checkpoints, y, grads = _pair(kwargs, softplus, d_out, d_last)
    assert checkpoints.dtype == mx.float64 and y.dtype == mx.float64
    # double: rounding of ~1e-16 per step
    assert_close(y, want_out, "out re-formed", rtol=1e-12, atol_scale=1e-12)
    for name, want in want_grads.items():
        assert grads[name].dtype == mx.float64 and np.array_equal(np.array(grads[name]), np.array(want)), name


def test_views_and_compile_give_the_same_results(device):
    kwargs, softplus = make_inputs(2, 33, 20, 16, ALL_OPTIONS, seed=9)
    d_out, d_last = _cotangents(kwargs)
    out, last, checkpoints, y, grads = _pair(kwargs, softplus, d_out, d_last)

    # views: u and z as transposes of (channels, time) arrays, d_out as a strided slice
    view = dict(kwargs)
    for k in ("u", "z"):
        view[k] = mx.array(np.ascontiguousarray(np.array(kwargs[k]).transpose(0, 2, 1))).transpose(0, 2, 1)
    wide = mx.repeat(d_out, 2, axis=2)[:, :, ::2]
    assert np.array_equal(np.array(wide), np.array(d_out))
    v_out, _, v_ckpt, v_y, v_grads = _pair(view, softplus, wide, d_last)
    assert np.array_equal(np.array(v_ckpt), np.array(checkpoints)) and np.array_equal(np.array(v_y), np.array(y))
    for name in grads:
        assert np.array_equal(np.array(v_grads[name]), np.array(grads[name])), name

    options, h0 = _split(kwargs)
    core = [kwargs[k] for k in ("u", "delta", "A", "B", "C")]

    @mx.compile
    def both(*arrays):
        o, la, ck = ops.selective_scan_checkpointed(*arrays, **options, delta_softplus=softplus, h0=h0)
        y2, g = ops.selective_scan_backward(*arrays, ck, d_out, d_last, **options, delta_softplus=softplus)
        return o, la, y2, *[g[k] for k in GRADS if k in g]

    compiled = both(*core)
    eager = [out, last, y, *[grads[k] for k in GRADS if k in grads]]
    for got, want in zip(compiled, eager):
        assert np.array_equal(np.array(got), np.array(want))


def _good(seed=3):
    kwargs, softplus = make_inputs(2, 20, 8, 4, frozenset({"z", "softplus"}), seed=seed)
    d_out, d_last = _cotangents(kwargs)
    _, _, checkpoints = ops.selective_scan_checkpointed(*[kwargs[k] for k in ("u", "delta", "A", "B", "C")],
                                                        z=kwargs["z"], delta_softplus=True)
    return kwargs, checkpoints, d_out, d_last


@pytest.mark.parametrize("bad,pattern", [
    ("checkpoints_of_another_length", r"checkpoints must have shape \(batch, chunks, state, channels\)"),
    ("checkpoints_rank", r"checkpoints must have shape \(batch, chunks, state, channels\)"),
    ("d_out_shape", r"d_out must have shape \(batch, time, channels\) like u"),
    ("d_last_shape", r"d_last_state must have shape \(batch, channels, state\)"),
    ("d_out_int", r"d_out must be a floating-point array"),
    ("u_shape", r"delta must have shape \(batch, time, channels\) like u"),
])
def test_backward_bad_input_raises_value_error_naming_the_argument(bad, pattern):
    kwargs, checkpoints, d_out, d_last = _good()
    if bad == "checkpoints_of_another_length":
        checkpoints = mx.concatenate([checkpoints, checkpoints], axis=1)
    elif bad == "checkpoints_rank":
        checkpoints = checkpoints[0]
    elif bad == "d_out_shape":
        d_out = d_out[:, :-1]
    elif bad == "d_last_shape":
        d_last = d_last[..., :-1]
    elif bad == "d_out_int":
        d_out = d_out.astype(mx.int32)
    elif bad == "u_shape":
        kwargs["u"] = kwargs["u"][:, :-1]
    core = [kwargs[k] for k in ("u", "delta", "A", "B", "C")]
    with pytest.raises(ValueError, match=rf"selective_scan: {pattern}"):
        ops.selective_scan_backward(*core, checkpoints, d_out, d_last, z=kwargs["z"], delta_softplus=True)


def test_backward_is_not_differentiable():
    kwargs, checkpoints, d_out, d_last = _good()
    core = [kwargs[k] for k in ("u", "delta", "A", "B", "C")]

    def f(d_out):
        y, grads = ops.selective_scan_backward(*core, checkpoints, d_out, d_last, z=kwargs["z"], delta_softplus=True)
        return grads["u"].sum()

    with pytest.raises(RuntimeError, match=r"selective_scan: second-order"):
        mx.grad(f)(d_out)


def test_half_inputs_compute_in_float32_and_return_their_dtypes():
    kwargs, softplus = make_inputs(2, 20, 8, 4, frozenset({"z", "D", "softplus"}), seed=6)
    d_out, d_last = _cotangents(kwargs)
    half = {k: v.astype(mx.float16) for k, v in kwargs.items()}
    # the float32 run on the same (float16-rounded) values is what the half run computes
    same = {k: v.astype(mx.float32) for k, v in half.items()}
    _, _, ckpt32, y32, g32 = _pair(same, softplus, d_out, d_last)
    out, last, ckpt, y, grads = _pair(half, softplus, d_out.astype(mx.float16), d_last.astype(mx.float16))
    assert out.dtype == last.dtype == y.dtype == mx.float16 and ckpt.dtype == mx.float32
    assert np.array_equal(np.array(ckpt), np.array(ckpt32))
    for name, g in grads.items():
        want = half.get(name, half["u"])  # h0 takes u's dtype
        assert g.dtype == want.dtype, name
    # the cotangents were rounded to float16 too: compare with the float32 pair on those
    _, _, _, y32b, g32b = _pair(same, softplus, d_out.astype(mx.float16).astype(mx.float32),
                                d_last.astype(mx.float16).astype(mx.float32))
    assert np.array_equal(np.array(y), np.array(y32b.astype(mx.float16)))
    for name, g in grads.items():
        assert np.array_equal(np.array(g), np.array(g32b[name].astype(mx.float16))), name
