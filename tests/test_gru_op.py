"""dfnet4.ops.gru beyond parity: float64 finite differences, compile, non-contiguous inputs,
half-precision inputs, input validation, and the error paths of the primitive."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from dfnet4 import _extension

pytestmark = pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext not built")

from dfnet4.ops import gru  # noqa: E402
from dfnet4.reference import gru as gru_reference  # noqa: E402
from gru_cases import NAMES, cotangent, make_inputs, max_scaled_error, value_and_grads  # noqa: E402


@pytest.mark.parametrize("bias,h0", [(True, True), (False, False)])
@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_finite_differences(bias, h0):
    """Hand-written backward vs central differences of the fused forward itself, in float64.

    Directional derivatives along random directions, eps 1e-6: truncation error ~eps^2 and
    rounding ~1e-16/eps = 1e-10, so agreement to 1e-7 relative is what a correct gradient gives
    and a wrong term (>= 1e-3 relative) cannot pass."""
    inputs = make_inputs(3, 6, 4, 5, bias=bias, h0=h0, seed=7, dtype=mx.float64)
    cot = cotangent((3, 6, 5), dtype=mx.float64)
    _, grads = value_and_grads(gru, inputs, cot)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name in grads:
        for _ in range(2):
            v = mx.array(rng.standard_normal(inputs[name].shape), dtype=mx.float64)
            plus = (gru(**{**inputs, name: inputs[name] + eps * v}) * cot).sum()
            minus = (gru(**{**inputs, name: inputs[name] - eps * v}) * cot).sum()
            fd = ((plus - minus) / (2 * eps)).item()
            an = (grads[name] * v).sum().item()
            assert abs(fd - an) <= 1e-7 * max(1.0, abs(an)), f"{name}: fd {fd} vs analytic {an}"


def test_compile_and_grad_of_compiled(device):
    inputs = make_inputs(4, 12, 5, 16, seed=2)
    cot = cotangent((4, 12, 16))
    hs_ref, grads_ref = value_and_grads(gru, inputs, cot)

    compiled = mx.compile(gru)
    assert max_scaled_error(compiled(**inputs), hs_ref) < 1e-6

    def loss(*arrays):
        return (gru(*arrays) * cot).sum()

    args = [inputs[k] for k in NAMES]
    for fn in (mx.grad(mx.compile(loss), argnums=list(range(6))),
               mx.compile(mx.grad(loss, argnums=list(range(6))))):
        for name, g in zip(NAMES, fn(*args)):
            assert max_scaled_error(g, grads_ref[name]) < 1e-6, name


@pytest.mark.parametrize("with_h0", [True, False])
def test_shapeless_compile_follows_new_shapes(with_h0, device):
    """output_shapes lets a shapeless-compiled graph be reused at other batch/time sizes; an
    absent h0/bhn must not leave a constant of the first call's shape in the graph."""
    if with_h0:
        compiled = mx.compile(lambda x, Wx, Wh, h0: gru(x, Wx, Wh, h0=h0), shapeless=True)
    else:
        compiled = mx.compile(lambda x, Wx, Wh, h0: gru(x, Wx, Wh), shapeless=True)
    for B, T in [(2, 5), (3, 9), (1, 4)]:
        inputs = make_inputs(B, T, 4, 6, bias=False, h0=with_h0, seed=B)
        mx.eval(inputs["x"], inputs["Wx"], inputs["Wh"])
        out = compiled(inputs["x"], inputs["Wx"], inputs["Wh"], inputs["h0"])
        assert out.shape == (B, T, 6)
        assert max_scaled_error(out, gru_reference(**inputs)) < 1e-6


def test_shapeless_replay_checks_sizes_at_eval(device):
    """A shapeless graph skips the Python validation on replay: a new hidden size is followed,
    and inputs that no longer agree raise an error instead of being read out of bounds."""
    compiled = mx.compile(lambda x, Wx, Wh, bhn: gru(x, Wx, Wh, bhn=bhn), shapeless=True)
    a = make_inputs(2, 3, 4, 6, seed=1)
    mx.eval(compiled(a["x"], a["Wx"], a["Wh"], a["bhn"]))
    b = make_inputs(2, 3, 4, 8, seed=2)
    out = compiled(b["x"], b["Wx"], b["Wh"], b["bhn"])
    assert max_scaled_error(out, gru_reference(**{**b, "b": None, "h0": None})) < 1e-6
    with pytest.raises(RuntimeError, match="no longer agree"):
        mx.eval(compiled(b["x"], b["Wx"], b["Wh"], mx.zeros((9,))))


def test_non_contiguous_inputs(device):
    """Transposed, strided and broadcast views give the same states and gradients as copies."""
    base = make_inputs(3, 10, 4, 6, seed=4)
    B, T, D, H = 3, 10, 4, 6
    views = {
        "x": mx.swapaxes(mx.array(np.array(base["x"]).transpose(1, 0, 2).copy()), 0, 1),
        "Wx": mx.array(np.array(base["Wx"]).T.copy()).T,
        "Wh": mx.array(np.array(base["Wh"]).T.copy()).T,
        "b": mx.array(np.repeat(np.array(base["b"]), 2))[::2],
        "bhn": mx.array(np.repeat(np.array(base["bhn"]), 3))[1::3],
        "h0": mx.array(np.array(base["h0"]).T.copy()).T,
    }
    for k in NAMES:
        assert mx.array_equal(views[k], base[k]), k
    cot = cotangent((B, T, H))
    hs, grads = value_and_grads(gru, base, cot)
    hs_v, grads_v = value_and_grads(gru, views, cot)
    # MLX's matmul may take another BLAS path for transposed operands (other rounding): 1e-6.
    assert max_scaled_error(hs_v, hs) < 1e-6
    for k in NAMES:
        assert max_scaled_error(grads_v[k], grads[k]) < 1e-6, k
    # a broadcast (zero-stride) h0
    row = base["h0"][:1]
    out = gru(**{**base, "h0": mx.broadcast_to(row, (B, H))})
    ref = gru(**{**base, "h0": mx.repeat(row, B, axis=0)})
    assert mx.array_equal(out, ref)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision_inputs(dtype, device):
    """Half inputs compute in float32 and return their own dtype: the result equals the float32
    computation on the same (rounded) values, up to rounding the output once to `dtype`."""
    inputs = make_inputs(2, 30, 5, 8, seed=9, dtype=dtype)
    out = gru(**inputs)
    assert out.dtype == dtype
    ref = gru(**{k: v.astype(mx.float32) for k, v in inputs.items()})
    half_ulp = {mx.float16: 2.0**-11, mx.bfloat16: 2.0**-8}[dtype]
    assert np.max(np.abs(np.array(out.astype(mx.float32)) - np.array(ref))) <= half_ulp
    grads = mx.grad(lambda Wh: gru(**{**inputs, "Wh": Wh}).astype(mx.float32).sum())(inputs["Wh"])
    assert grads.dtype == dtype and bool(mx.all(mx.isfinite(grads)))


def test_mixed_precision_promotes(device):
    inputs = make_inputs(2, 3, 4, 5, seed=1)
    inputs["x"] = inputs["x"].astype(mx.float16)
    assert gru(**inputs).dtype == mx.float32


def _bad(**changes):
    inputs = make_inputs(2, 3, 4, 5, seed=0)
    inputs.update(changes)
    return inputs


BAD = [
    (_bad(x=mx.zeros((3, 4))), "x has shape (3, 4), needs rank 3"),
    (_bad(x=mx.zeros((2, 3, 4), dtype=mx.int32)), "x has dtype mlx.core.int32"),
    (_bad(x=mx.zeros((2, 0, 4))), "x has shape (2, 0, 4), needs at least one time step"),
    (_bad(Wx=mx.zeros((15, 3))), "Wx has shape (15, 3), needs (15, 4)"),
    (_bad(Wx=mx.zeros((15,))), "Wx has shape (15,), needs rank 2"),
    (_bad(Wh=mx.zeros((15, 6))), "Wh has shape (15, 6), needs (18, 6)"),
    (_bad(Wh=mx.zeros((15, 5), dtype=mx.int16)), "Wh has dtype mlx.core.int16"),
    (_bad(b=mx.zeros((5,))), "b has shape (5,), needs (15,)"),
    (_bad(bhn=mx.zeros((15,))), "bhn has shape (15,), needs (5,)"),
    (_bad(h0=mx.zeros((3, 5))), "h0 has shape (3, 5), needs (2, 5)"),
    (_bad(h0=mx.zeros((2, 3, 5))), "h0 has shape (2, 3, 5), needs rank 2"),
    (_bad(h0=np.zeros((2, 5), dtype=np.float32)), "h0 must be an mx.array, got ndarray"),
]


@pytest.mark.parametrize("inputs,message", BAD, ids=[m.split(" ")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_inputs_raise_value_error_at_build_time(inputs, message):
    with pytest.raises(ValueError) as info:
        gru(**inputs)
    assert message in str(info.value)


def test_float64_is_refused_off_the_cpu_when_the_graph_is_built(device):
    inputs = make_inputs(2, 3, 4, 5, seed=0, dtype=mx.float64)
    if device == mx.cpu:
        assert gru(**inputs).dtype == mx.float64
    else:
        with pytest.raises(ValueError, match="float64 is only supported on the CPU stream"):
            gru(**inputs)


def test_unsupported_transforms_say_so():
    inputs = make_inputs(2, 3, 4, 5, seed=0)
    with pytest.raises(Exception, match="jvp"):
        mx.jvp(lambda x: gru(**{**inputs, "x": x}), [inputs["x"]], [inputs["x"]])
    with pytest.raises(Exception, match="vmap"):
        mx.vmap(lambda x: gru(**{**inputs, "x": x}))(mx.stack([inputs["x"]] * 2))
    first = mx.grad(lambda x: gru(**{**inputs, "x": x}).sum())
    with pytest.raises(Exception, match="second derivatives"):
        mx.grad(lambda x: first(x).sum())(inputs["x"])


@pytest.mark.parametrize("threads", ["1", "3", "8"])
@pytest.mark.cpu_only("DFNET4_NUM_THREADS sets the CPU kernels' threads")
def test_thread_count_does_not_change_results(monkeypatch, threads):
    """Threads split hidden-unit blocks without changing any summation order: bitwise equal
    (8 threads on this 2-core machine also exercises waiting on descheduled threads)."""
    inputs = make_inputs(5, 7, 4, 200, seed=6)  # 200 units: blocks split unevenly over 3 threads
    cot = cotangent((5, 7, 200))
    monkeypatch.setenv("DFNET4_NUM_THREADS", "2")
    hs2, g2 = value_and_grads(gru, inputs, cot)
    monkeypatch.setenv("DFNET4_NUM_THREADS", threads)
    hs, g = value_and_grads(gru, inputs, cot)
    assert mx.array_equal(hs, hs2)
    for k in g:
        assert mx.array_equal(g[k], g2[k]), k


@pytest.mark.parametrize("isa", ["generic", "avx2"])
@pytest.mark.cpu_only("DFNET4_CPU_ISA picks among the CPU kernels' x86 variants")
def test_every_cpu_isa_variant_agrees(monkeypatch, isa):
    """The x86 build carries AVX-512, AVX2 and baseline copies of the CPU kernels and picks the
    best at run time; DFNET4_CPU_ISA caps it so each copy is checked here on one machine.
    (Where the cap is above what the CPU has, the test compares the same variant with itself.)
    Batch 5 and hidden 70 exercise the batch-tile tails and partial unit blocks."""
    inputs = make_inputs(5, 9, 4, 70, seed=8)
    cot = cotangent((5, 9, 70))
    hs, grads = value_and_grads(gru, inputs, cot)
    monkeypatch.setenv("DFNET4_CPU_ISA", isa)
    hs_isa, grads_isa = value_and_grads(gru, inputs, cot)
    # Same block order, different vector widths and FMA contraction: a few ulps.
    assert max_scaled_error(hs_isa, hs) < 1e-6
    for k in grads:
        assert max_scaled_error(grads_isa[k], grads[k]) < 1e-6, k
