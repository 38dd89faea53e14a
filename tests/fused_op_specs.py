"""The fused ops described the same way for tests/test_fused_op_contract.py: how to make their
inputs, call them, weight their outputs, build views of their inputs, the bad inputs they refuse,
and the tolerances each comparison allows (with the reason next to each number).

Over 500 lines on purpose: seven specs of about a screen each, kept side by side so that the
contract's comparisons of the ops read as one table; an eighth op adds its spec here."""

from __future__ import annotations

from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np
from batch_norm_cases import EPS as BN_EPS
from batch_norm_cases import cotangents as bn_cotangents
from batch_norm_cases import make_inputs as bn_inputs
from causal_conv_cases import cotangents as conv_cotangents
from causal_conv_cases import make_inputs as conv_inputs
from depthwise_conv_cases import make_inputs as dw_inputs
from gru_cases import cotangent as gru_cotangent
from gru_cases import make_inputs as gru_inputs
from gru_cases import max_scaled_error
from rms_norm_cases import EPS as RMS_EPS
from rms_norm_cases import cotangent as rms_cotangent
from rms_norm_cases import make_inputs as rms_inputs
from spectral_loss_cases import GAMMA as SPECTRAL_GAMMA
from spectral_loss_cases import cotangents as spectral_cotangents
from spectral_loss_cases import make_spectra
from test_selective_scan_support import ALL_OPTIONS, assert_close
from test_selective_scan_support import make_inputs as scan_inputs

from dfnet4 import ops
from dfnet4 import reference as references


@dataclass
class Case:
    """The array arguments given (name -> array, in call order) and the op's other arguments."""

    arrays: dict
    options: dict = field(default_factory=dict)


def run(fn, arrays: dict, options: dict) -> tuple:
    """fn's outputs as a tuple (the scan and the conv return two arrays, the GRU one)."""
    out = fn(**arrays, **options)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def outputs_and_grads(spec, fn, case: Case, arrays: dict | None = None):
    """(outputs, {name: gradient}) of fn under the spec's fixed cotangents, for every given array."""
    arrays = case.arrays if arrays is None else arrays
    names = list(arrays)

    def f(*values):
        return run(fn, dict(zip(names, values)), case.options)

    outs, grads = mx.vjp(f, [arrays[k] for k in names], spec.cotangents(case))
    mx.eval(outs, grads)
    return tuple(outs), dict(zip(names, grads))


def exact(actual, expected, label):
    assert_close(actual, expected, label, rtol=0, atol_scale=0)


def norm_views(arrays: dict) -> dict:
    """The normalisations' x with transposed storage and weight as a strided view."""
    x, w = arrays["x"], arrays["weight"]
    return {"x": mx.swapaxes(mx.contiguous(mx.swapaxes(x, 0, 2)), 0, 2),
            "weight": mx.stack([w] * 2, axis=1).reshape(2 * w.shape[0])[::2]}


class Spec:
    """What most ops share; each spec below overrides what its op does differently."""

    shapeless_grad = True
    # The x86 variants (csrc/cpu_isa.h) differ in vector width and FMA contraction only: a few
    # float32 ulps, carried through recurrences and sums (measured per op, see below).
    isa_tolerance = 1e-6
    view_close = staticmethod(exact)  # views: the same kernels on the same values

    # mx.compile: the same primitives run; only the summation order of the final loss may differ.
    def compiled_close(self, got, want, label, kind):
        if kind == "value":
            assert_close(got, want, label, rtol=1e-6, atol_scale=0)
        else:
            assert_close(got, want, label, rtol=1e-6, atol_scale=1e-7)

    @property
    def isa_case(self):
        return self.determinism_case

    # An op whose shapeless-compile cases differ only in shape (one variant)
    def shapeless_case(self, variant, shape, seed):
        return self.case(shape, seed=seed)


class ScanSpec(Spec):
    name = "selective_scan"
    fn = staticmethod(ops.selective_scan)
    reference = staticmethod(references.selective_scan)

    def case(self, batch, time, channels, state=4, options=ALL_OPTIONS, seed=0, dtype=mx.float32):
        kwargs, softplus = scan_inputs(batch, time, channels, state, options, seed=seed, dtype=dtype)
        return Case(kwargs, {"delta_softplus": softplus, "return_last_state": True})

    def cotangents(self, case):
        u, n = case.arrays["u"], case.arrays["A"].shape[1]
        rng = np.random.default_rng(1)
        b, _, d = u.shape
        return [mx.array(rng.standard_normal(u.shape)).astype(u.dtype),
                mx.array(rng.standard_normal((b, d, n))).astype(u.dtype)]

    def loss(self, outs):
        out, last = outs
        return (out * out).sum() + last.sum()

    compile_case = dict(batch=2, time=30, channels=36, seed=2)
    shapeless_shapes = [(2, 30, 36), (3, 41, 36), (1, 7, 36)]  # (batch, time, channels), state 4
    variants = {"all": ALL_OPTIONS, "none": frozenset()}

    def shapeless_case(self, variant, shape, seed):
        return self.case(*shape, options=self.variants[variant], seed=seed)

    # Against the reference: the fused op sums over state in another order and has its own exp,
    # so a few hundred float32 ulps of the largest value (the parity tests' tolerance).
    def parity_close(self, got, want, label):
        for g, w, part in zip(got, want, ("out", "last_state")):
            assert_close(g, w, f"{label} {part}")

    def views(self, case):
        a = case.arrays
        b, t, d = a["u"].shape
        n = a["A"].shape[1]
        return {
            "u": mx.swapaxes(mx.contiguous(mx.swapaxes(a["u"], 1, 2)), 1, 2),  # transposed storage
            "delta": mx.stack([a["delta"]] * 2, axis=3).reshape(b, t, 2 * d)[:, :, ::2],  # strided
            "A": mx.contiguous(a["A"].T).T,
            "B": mx.concatenate([a["B"], a["C"]], axis=2)[:, :, :n],  # sliced
            "C": mx.concatenate([a["B"], a["C"]], axis=2)[:, :, n:],  # sliced with offset
            "D": mx.broadcast_to(a["D"][None], (3, d))[1],  # from a broadcast
            "z": a["z"][:, ::-1][:, ::-1],  # reversed twice
            "delta_bias": mx.stack([a["delta_bias"]] * 2, axis=1).reshape(2 * d)[::2],
            "h0": mx.swapaxes(mx.contiguous(mx.swapaxes(a["h0"], 0, 2)), 0, 2),
        }

    view_case = dict(batch=2, time=25, channels=12, seed=4)
    half_case = dict(batch=2, time=30, channels=20, seed=9)
    half_oracle = staticmethod(references.selective_scan)

    # Computed in float32 from the same (half-valued) inputs; only the final rounding to the half type
    # differs: 2^-8 relative for bfloat16, 2^-11 for float16 (tol is twice that).
    def half_close(self, got, want, tol):
        for g, w, part in zip(got, want, ("out", "last")):
            assert_close(g, w, part, rtol=tol, atol_scale=tol)

    def bad_case(self):
        return self.case(2, 5, 6)

    bad = [
        ({"u": mx.zeros((5, 6))}, r"u .*\(batch, time, channels\)"),
        ({"delta": mx.zeros((2, 5, 7))}, r"delta .*\(2, 5, 6\)"),
        ({"delta": mx.zeros((2, 5, 6), dtype=mx.int32)}, "delta .*floating-point.*int32"),
        ({"A": mx.zeros((7, 4))}, r"A .*channels.*\(6, 4\)"),
        ({"A": mx.zeros((6,))}, r"A .*\(channels, state\)"),
        ({"A": mx.zeros((6, 65))}, "A .*1 to 64 states"),
        ({"B": mx.zeros((2, 5, 3))}, r"B .*\(2, 5, 4\)"),
        ({"C": mx.zeros((2, 4, 4))}, r"C .*\(2, 5, 4\)"),
        ({"C": mx.zeros((2, 5, 4), dtype=mx.uint8)}, "C .*floating-point"),
        ({"D": mx.zeros((5,))}, r"D .*\(channels,\)"),
        ({"z": mx.zeros((2, 5))}, r"z .*\(batch, time, channels\)"),
        ({"delta_bias": mx.zeros((6, 1))}, r"delta_bias .*\(channels,\)"),
        ({"h0": mx.zeros((2, 4, 6))}, r"h0 .*\(2, 6, 4\)"),
        ({"u": [[1.0]]}, "u .*mx.array"),
        ({"u": mx.zeros((2, 0, 6)), "delta": mx.zeros((2, 0, 6))}, "u .*>= 1"),
    ]

    determinism_case = dict(batch=3, time=45, channels=70, state=16, seed=12)  # ISA variants: <= 1.5e-7


class ConvSpec(Spec):
    name = "causal_conv1d"
    fn = staticmethod(ops.causal_conv1d)
    reference = staticmethod(references.causal_conv1d)

    def case(self, batch, time, channels, width=4, bias=True, window=True, seed=0, dtype=mx.float32):
        inputs = conv_inputs(batch, time, channels, width, bias=bias, window=window, seed=seed, dtype=dtype)
        return Case({k: v for k, v in inputs.items() if v is not None},
                    {"activation": "silu", "return_window": True})

    def cotangents(self, case):
        a = case.arrays
        return conv_cotangents({"x": a["x"], "weight": a["weight"]})

    def loss(self, outs):
        y, w = outs
        return (y * y).sum() + (w * w * w).sum()

    compile_case = dict(batch=2, time=70, channels=36, seed=2)
    shapeless_shapes = [(2, 70, 36), (3, 130, 36), (1, 2, 36)]  # (batch, time, channels), K 4
    variants = {"all": dict(bias=True, window=True), "none": dict(bias=False, window=False)}

    def shapeless_case(self, variant, shape, seed):
        return self.case(*shape, seed=seed, **self.variants[variant])

    # y: at most K + 1 float32 roundings (the kernel fuses multiply-adds, MLX does not) and an exp
    # accurate to ~1e-7 (tests/test_causal_conv1d.py: ELEMENTWISE); the new window is a copy.
    def parity_close(self, got, want, label):
        assert_close(got[0], want[0], f"{label} y", rtol=2e-6, atol_scale=2e-6)
        exact(got[1], want[1], f"{label} new_window")

    def views(self, case):
        a = case.arrays
        c = a["x"].shape[2]
        return {
            "x": mx.swapaxes(mx.contiguous(mx.swapaxes(a["x"], 1, 2)), 1, 2),  # transposed storage
            "weight": mx.contiguous(a["weight"].T).T,
            "bias": mx.stack([a["bias"]] * 2, axis=1).reshape(2 * c)[::2],  # strided
            "window": mx.concatenate([a["window"], a["window"]], axis=2)[:, :, c:],  # sliced with an offset
        }

    view_case = dict(batch=2, time=25, channels=12, seed=4)
    half_case = dict(batch=2, time=70, channels=20, seed=9)
    half_oracle = staticmethod(references.causal_conv1d)

    # As the scan's; the new window is a copy of (half-valued) inputs: exact.
    def half_close(self, got, want, tol):
        assert_close(got[0], want[0], "y", rtol=tol, atol_scale=tol)
        exact(got[1], want[1], "new_window")

    def bad_case(self):
        return self.case(2, 5, 6)

    bad = [
        ({"x": mx.zeros((5, 6))}, r"x .*\(batch, time, channels\)"),
        ({"x": mx.zeros((2, 5, 6), dtype=mx.int32)}, "x .*floating-point.*int32"),
        ({"x": [[[1.0]]]}, "x .*mx.array"),
        ({"x": mx.zeros((2, 0, 6))}, "x .*>= 1"),
        ({"weight": mx.zeros((4, 7))}, r"weight .*channels.*\(4, 6\)"),
        ({"weight": mx.zeros((6,))}, r"weight .*\(K, channels\)"),
        ({"weight": mx.zeros((9, 6)), "window": None}, "weight .*1 to 8 taps"),
        ({"weight": mx.zeros((0, 6)), "window": None}, "weight .*1 to 8 taps"),
        ({"weight": mx.zeros((4, 6), dtype=mx.uint8)}, "weight .*floating-point"),
        ({"bias": mx.zeros((5,))}, r"bias .*\(channels,\)"),
        ({"bias": mx.zeros((6, 1))}, r"bias .*\(channels,\)"),
        ({"window": mx.zeros((2, 4, 6))}, r"window .*\(2, 3, 6\)"),
        ({"window": mx.zeros((3, 6))}, r"window .*\(batch, K-1, channels\)"),
        ({"window": mx.zeros((2, 3, 6), dtype=mx.int16)}, "window .*floating-point"),
        ({"activation": "relu"}, "activation .*'silu' or None"),
        ({"activation": "SiLU"}, "activation .*'silu' or None"),
    ]

    determinism_case = dict(batch=3, time=200, channels=150, seed=12)  # ISA variants: <= 2.4e-7


class GruSpec(Spec):
    name = "gru"
    fn = staticmethod(ops.gru)
    reference = staticmethod(references.gru)

    def case(self, batch, time, input_size=4, hidden=6, bias=True, h0=True, seed=0, dtype=mx.float32):
        inputs = gru_inputs(batch, time, input_size, hidden, bias=bias, h0=h0, seed=seed, dtype=dtype)
        return Case({k: v for k, v in inputs.items() if v is not None})

    def cotangents(self, case):
        x, Wh = case.arrays["x"], case.arrays["Wh"]
        return [gru_cotangent((x.shape[0], x.shape[1], Wh.shape[1]), dtype=x.dtype)]

    def loss(self, outs):
        (hs,) = outs
        return (hs * hs).sum() + hs.sum()  # no constant of one call's shape: shapeless graphs use it too

    # MLX's matmuls around the primitive (input projection, dWh) may group differently once
    # compiled: a few ulps, far below 1e-6 of the largest magnitude.
    def compiled_close(self, got, want, label, kind):
        assert max_scaled_error(got, want) < 1e-6, label

    compile_case = dict(batch=4, time=12, input_size=5, hidden=16, seed=2)
    shapeless_shapes = [(2, 5), (3, 9), (1, 4)]  # (batch, time), input 4, hidden 6
    # Absent h0 / bhn must not leave a constant of the first call's shape in a shapeless graph.
    variants = {"h0": dict(bias=False, h0=True), "none": dict(bias=False, h0=False), "all": dict()}
    # Not under mx.compile(shapeless=True) (docs/gru.md): MLX's slice and reshape in the
    # weight-gradient graph around the primitive cannot infer their shapes; the forward can.
    shapeless_grad = False

    def shapeless_case(self, variant, shape, seed):
        return self.case(*shape, seed=seed, **self.variants[variant])

    # The kernel's blocked FMA sums against MLX's matmuls: a few ulps per step at these sizes.
    def parity_close(self, got, want, label):
        assert max_scaled_error(got[0], want[0]) < 1e-6, label

    def views(self, case):
        a = case.arrays
        return {
            "x": mx.swapaxes(mx.array(np.array(a["x"]).transpose(1, 0, 2).copy()), 0, 1),
            "Wx": mx.array(np.array(a["Wx"]).T.copy()).T,
            "Wh": mx.array(np.array(a["Wh"]).T.copy()).T,
            "b": mx.array(np.repeat(np.array(a["b"]), 2))[::2],
            "bhn": mx.array(np.repeat(np.array(a["bhn"]), 3))[1::3],
            "h0": mx.array(np.array(a["h0"]).T.copy()).T,
        }

    view_case = dict(batch=3, time=10, input_size=4, hidden=6, seed=4)

    # MLX's matmul may take another BLAS path for transposed operands (other rounding): 1e-6.
    @staticmethod
    def view_close(got, want, label):
        assert max_scaled_error(got, want) < 1e-6, label

    half_case = dict(batch=2, time=30, input_size=5, hidden=8, seed=9)
    half_oracle = staticmethod(ops.gru)  # the float32 computation on the same (rounded) values

    # Half inputs compute in float32 and return their own dtype: the result is the float32 one
    # rounded once, within half an ulp of the half type for states in (-1, 1) (tol is twice that).
    def half_close(self, got, want, tol):
        diff = np.abs(np.array(got[0].astype(mx.float32)) - np.array(want[0]))
        assert np.max(diff) <= tol / 2

    def bad_case(self):
        return self.case(2, 3, 4, 5)

    bad = [
        ({"x": mx.zeros((3, 4))}, r"x must have shape \(batch, time, input_size\), got shape \(3, 4\)"),
        ({"x": mx.zeros((2, 3, 4), dtype=mx.int32)}, "x must be a floating-point array .*dtype mlx.core.int32"),
        ({"x": mx.zeros((2, 0, 4))}, r"x needs at least one time step, got shape \(2, 0, 4\)"),
        ({"Wx": mx.zeros((15, 3))}, r"Wx must have shape .* = \(15, 4\), got shape \(15, 3\)"),
        ({"Wx": mx.zeros((15,))}, r"Wx must have shape \(3\*hidden, input_size\), got shape \(15,\)"),
        ({"Wh": mx.zeros((15, 6))}, r"Wh must have shape .* = \(18, 6\), got shape \(15, 6\)"),
        ({"Wh": mx.zeros((15, 5), dtype=mx.int16)}, "Wh must be a floating-point array .*dtype mlx.core.int16"),
        ({"b": mx.zeros((5,))}, r"b must have shape .* = \(15,\), got shape \(5,\)"),
        ({"bhn": mx.zeros((15,))}, r"bhn must have shape .* = \(5,\), got shape \(15,\)"),
        ({"h0": mx.zeros((3, 5))}, r"h0 must have shape .* = \(2, 5\), got shape \(3, 5\)"),
        ({"h0": mx.zeros((2, 3, 5))}, r"h0 must have shape \(batch, hidden\).*got shape \(2, 3, 5\)"),
        ({"h0": np.zeros((2, 5), dtype=np.float32)}, "h0 must be an mx.array .*got ndarray"),
    ]

    # 200 units: blocks split unevenly over 3 threads.
    determinism_case = dict(batch=5, time=7, input_size=4, hidden=200, seed=6)
    # Batch 5 and hidden 70 exercise the batch-tile tails and partial unit blocks (measured <= 1.3e-7).
    isa_case = dict(batch=5, time=9, input_size=4, hidden=70, seed=8)


SPECS = [ScanSpec(), ConvSpec(), GruSpec()]


# ---- the model-level fused ops (batch norm, depthwise conv, spectral loss) ---------------------------

class BatchNormSpec(Spec):
    name = "batch_norm"
    fn = staticmethod(ops.batch_norm)
    reference = staticmethod(references.batch_norm)

    def case(self, shape, relu=True, seed=0, dtype=mx.float32):
        return Case(bn_inputs(shape, seed=seed, dtype=dtype), {"eps": BN_EPS, "relu": relu})

    def cotangents(self, case):
        return bn_cotangents(case.arrays)

    def loss(self, outs):
        y, mean, var = outs
        return (y * y).sum() + (mean * var).sum()

    compile_case = dict(shape=(2, 70, 36), seed=2)
    shapeless_shapes = [(2, 70, 36), (3, 130, 36), (1, 2, 36)]  # other row counts, 36 channels
    variants = {"relu": dict(relu=True), "plain": dict(relu=False)}

    def shapeless_case(self, variant, shape, seed):
        return self.case(shape, seed=seed, **self.variants[variant])

    # MLX's float32 mean and var over the rows are ~10x less accurate than the fused ones
    # (tests/test_batch_norm_op.py: FLOAT32_REFERENCE), which sets the bound.
    def parity_close(self, got, want, label):
        for g, w, part in zip(got, want, ("y", "mean", "var")):
            assert_close(g, w, f"{label} {part}", rtol=0, atol_scale=3e-5)

    def views(self, case):
        b = case.arrays["bias"]
        return {**norm_views(case.arrays), "bias": mx.concatenate([b, b])[b.shape[0]:]}  # sliced with an offset

    view_case = dict(shape=(4, 25, 12), seed=4)
    half_case = dict(shape=(4, 60, 20), seed=9)
    half_oracle = staticmethod(references.batch_norm)

    # Computed in float32 from the same (half-valued) inputs; y, mean and var are rounded once to the
    # half type at the end (tol is twice its relative step).
    def half_close(self, got, want, tol):
        for g, w, part in zip(got, want, ("y", "mean", "var")):
            assert_close(g, w, part, rtol=tol, atol_scale=tol)

    def bad_case(self):
        return self.case((4, 6))

    bad = [
        ({"x": mx.zeros((6,))}, r"x must have shape \(\.\.\., channels\)"),
        ({"x": mx.zeros((4, 6), dtype=mx.int32)}, "x .*floating-point.*int32"),
        ({"x": [[1.0]]}, "x .*mx.array"),
        ({"x": mx.zeros((1, 6))}, "training needs more than one value per channel"),
        ({"x": mx.zeros((4, 0))}, r"x must have shape \(\.\.\., channels\) with at least one channel"),
        ({"weight": mx.zeros((5,))}, r"weight .*\(channels,\) .*\(6,\)"),
        ({"weight": mx.zeros((6, 1))}, r"weight .*\(channels,\)"),
        ({"bias": mx.zeros((6,), dtype=mx.uint8)}, "bias .*floating-point"),
        ({"bias": mx.zeros((7,))}, r"bias .*\(channels,\)"),
        ({"eps": 0.0}, "eps .*> 0"),
        ({"eps": float("inf")}, "eps .*finite"),
        ({"eps": "1e-5"}, "eps .*finite number"),
    ]

    determinism_case = dict(shape=(3, 200, 150), seed=12)


class DepthwiseConvSpec(Spec):
    name = "depthwise_conv"
    fn = staticmethod(ops.depthwise_conv)
    reference = staticmethod(references.depthwise_conv)

    # DFN3's two geometries: a (1, 3) stride-2 conv, and its transposed conv back to twice the freqs.
    GEOMETRIES = {"conv": dict(stride=2, padding=1, transposed=False, output_padding=0),
                  "transposed": dict(stride=2, padding=1, transposed=True, output_padding=1)}

    def case(self, shape, width=3, geometry="conv", seed=0, dtype=mx.float32):
        x, w = dw_inputs(shape, width, seed, dtype)
        return Case({"x": x, "weight": w}, dict(self.GEOMETRIES[geometry]))

    def cotangents(self, case):
        y = references.depthwise_conv(**case.arrays, **case.options)
        return [mx.array(np.random.default_rng(1).standard_normal(y.shape), dtype=y.dtype)]

    def loss(self, outs):
        (y,) = outs
        return (y * y).sum() + y.sum()

    compile_case = dict(shape=(2, 30, 20, 16), seed=2)
    shapeless_shapes = [(2, 30, 20, 16), (3, 7, 20, 16), (1, 1, 20, 16)]  # other rows, 20 freqs, 16 channels
    variants = {"conv": "conv", "transposed": "transposed"}

    def shapeless_case(self, variant, shape, seed):
        return self.case(shape, geometry=variant, seed=seed)

    # At most K products per output, rounded in another order than the reference's slices
    # (tests/test_depthwise_conv_op.py: ELEMENTWISE).
    def parity_close(self, got, want, label):
        assert_close(got[0], want[0], f"{label} y", rtol=2e-6, atol_scale=2e-6)

    def views(self, case):
        a = case.arrays
        return {"x": mx.swapaxes(mx.contiguous(mx.swapaxes(a["x"], 0, 3)), 0, 3),  # transposed storage
                "weight": mx.contiguous(a["weight"].T).T}

    view_case = dict(shape=(4, 6, 10, 12), seed=4)
    half_case = dict(shape=(2, 6, 16, 8), seed=9)
    half_oracle = staticmethod(references.depthwise_conv)

    def half_close(self, got, want, tol):
        assert_close(got[0], want[0], "y", rtol=tol, atol_scale=tol)

    def bad_case(self):
        return self.case((2, 6, 4))

    bad = [
        ({"x": mx.zeros((6,))}, r"x must have shape \(\.\.\., freqs, channels\)"),
        ({"x": mx.zeros((2, 6, 4), dtype=mx.int32)}, "x .*floating-point"),
        ({"weight": mx.zeros((3, 5))}, r"weight .*x's channels \(4\)"),
        ({"weight": mx.zeros((9, 4))}, "weight .*1 to 8 taps"),
        ({"weight": mx.zeros((3,))}, r"weight .*\(K, channels\)"),
        ({"stride": 0}, "stride .*>= 1"),
        ({"stride": 1.5}, "stride .*integer"),
        ({"padding": 3}, r"padding .*\[0, 3\)"),
        ({"output_padding": 1, "transposed": False}, "output_padding is for transposed convolutions only"),
        ({"transposed": True, "stride": 2, "output_padding": 2}, r"output_padding .*\[0, 2\)"),
    ]

    determinism_case = dict(shape=(3, 50, 48, 70), seed=12)


class SpectralLossSpec(Spec):
    name = "compressed_spectral_loss"
    fn = staticmethod(ops.compressed_spectral_loss)
    reference = staticmethod(references.compressed_spectral_loss)

    # Real (..., 2) pairs here (every dtype); complex64 inputs: tests/test_spectral_loss_op.py.
    def case(self, shape, seed=0, dtype=mx.float32):
        pred, target = make_spectra(shape, seed=seed, real_pairs=True, dtype=dtype)
        return Case({"pred": pred, "target": target}, {"gamma": SPECTRAL_GAMMA})

    def cotangents(self, case):
        return spectral_cotangents(case.arrays["pred"].dtype)

    def loss(self, outs):
        mag, cplx = outs
        return 3 * mag + cplx

    compile_case = dict(shape=(2, 70, 33), seed=2)
    shapeless_shapes = [(2, 70, 33), (3, 130, 33), (1, 1, 33)]
    variants = {"pairs": None}

    # The reference's terms are MLX's float32 means (tests/test_spectral_loss_op.py:
    # TERMS_FLOAT32_REFERENCE); the fused sums agree with float64 to ~1e-7.
    def parity_close(self, got, want, label):
        for g, w, part in zip(got, want, ("mag", "cplx")):
            assert_close(g, w, f"{label} {part}", rtol=1e-3, atol_scale=0)

    def views(self, case):
        a = case.arrays
        n = a["target"].shape[1]
        return {"pred": mx.swapaxes(mx.contiguous(mx.swapaxes(a["pred"], 0, 1)), 0, 1),  # transposed storage
                "target": mx.concatenate([a["target"], a["target"]], axis=1)[:, n:]}  # sliced with an offset

    view_case = dict(shape=(6, 40), seed=4)
    half_case = dict(shape=(4, 60), seed=9)
    half_oracle = staticmethod(ops.compressed_spectral_loss)  # the float32 computation on the same values

    def half_close(self, got, want, tol):
        for g, w, part in zip(got, want, ("mag", "cplx")):
            assert_close(g, w, part, rtol=tol, atol_scale=0)

    def bad_case(self):
        return self.case((4,))

    bad = [
        ({"pred": mx.zeros((4, 3)), "target": mx.zeros((4, 3))}, r"pred .*\(\.\.\., 2\)"),
        ({"pred": mx.zeros((4, 2), dtype=mx.int32)}, "pred .*complex64 or a floating-point"),
        ({"pred": [[1.0, 2.0]]}, "pred .*mx.array"),
        ({"target": mx.zeros((5, 2))}, "target .*must match pred"),
        ({"target": mx.zeros((4,), dtype=mx.complex64)}, "target .*must match pred"),
        ({"pred": mx.zeros((0, 2)), "target": mx.zeros((0, 2))}, "pred .*at least one complex value"),
        ({"gamma": 0.0}, r"gamma .*\(0, 1\]"),
        ({"gamma": 1.5}, r"gamma .*\(0, 1\]"),
    ]

    determinism_case = dict(shape=(5, 9000), seed=12)


class RmsNormSpec(Spec):
    name = "rms_norm"
    fn = staticmethod(ops.rms_norm)
    reference = staticmethod(references.rms_norm)

    def case(self, shape, seed=0, dtype=mx.float32):
        return Case(rms_inputs(shape, seed=seed, dtype=dtype), {"eps": RMS_EPS})

    def cotangents(self, case):
        return [rms_cotangent(case.arrays)]

    def loss(self, outs):
        (y,) = outs
        return (y * y * mx.arange(y.shape[-1], dtype=y.dtype)).sum()  # not constant in x: d/dx != 0

    compile_case = dict(shape=(2, 70, 36), seed=2)
    # other row counts (a partial 32-row block, one row) and another rank, 36 channels
    shapeless_shapes = [(2, 70, 36), (3, 130, 36), (1, 1, 36)]
    variants = {"rows": None}

    # The fused row sums and MLX's agree to a few float32 ulps (tests/test_rms_norm_op.py: TRUTH).
    def parity_close(self, got, want, label):
        assert_close(got[0], want[0], f"{label} y", rtol=0, atol_scale=1e-6)

    def views(self, case):
        return norm_views(case.arrays)

    view_case = dict(shape=(4, 25, 12), seed=4)
    half_case = dict(shape=(4, 60, 20), seed=9)
    half_oracle = staticmethod(references.rms_norm)

    # Computed in float32 from the same (half-valued) inputs; y is rounded once to the half type at
    # the end (tol is twice its relative step).
    def half_close(self, got, want, tol):
        assert_close(got[0], want[0], "y", rtol=tol, atol_scale=tol)

    def bad_case(self):
        return self.case((4, 6))

    bad = [
        ({"x": mx.array(1.0)}, r"x must have shape \(\.\.\., channels\) with at least 1 dimension"),
        ({"x": mx.zeros((4, 6), dtype=mx.int32)}, "x .*floating-point.*int32"),
        ({"x": [[1.0]]}, "x .*mx.array"),
        ({"x": mx.zeros((4, 0))}, r"x must have shape \(\.\.\., channels\) with at least one channel"),
        ({"weight": mx.zeros((5,))}, r"weight .*\(channels,\) .*\(6,\)"),
        ({"weight": mx.zeros((6, 1))}, r"weight .*\(channels,\)"),
        ({"weight": mx.zeros((6,), dtype=mx.int32)}, "weight .*floating-point"),
        ({"eps": 0.0}, "eps .*> 0"),
        ({"eps": -1e-5}, "eps .*> 0"),
        ({"eps": float("inf")}, "eps .*finite"),
        ({"eps": float("nan")}, "eps .*finite"),
        ({"eps": "1e-5"}, "eps .*finite number"),
    ]

    # 150 rows: five 32-row blocks (the last partial) split over 1-8 threads; 100 channels: six
    # 16-channel chunks and a tail of 4.
    determinism_case = dict(shape=(150, 100), seed=12)


SPECS += [BatchNormSpec(), DepthwiseConvSpec(), SpectralLossSpec(), RmsNormSpec()]
