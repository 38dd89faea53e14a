"""The model's convolutions (GEMM + im2col / tap_sum with hand-written VJPs) against mx.conv2d.

Both sides accumulate at most kt*kf*in_ch float32 products in different orders, so outputs and
gradients agree to a few float32 ulps of their scale; 1e-5 relative to the largest entry leaves
room for that and still catches any wrong tap, stride phase or group (those give O(1) errors).
"""

from __future__ import annotations

import mlx.core as mx
import pytest

from dfnet4 import _extension
from dfnet4.model.conv_ops import causal_tap_sum, im2col, tap_sum
from dfnet4.model.layers import DepthwiseTransposedConv, GroupedConv

RTOL = 1e-5

# GroupedConv and DepthwiseTransposedConv on both paths: pure MLX (fused=False) and, for the
# depthwise (1, K) convs, the fused depthwise_conv primitive (its own tests: test_depthwise_conv_op.py).
FUSED = pytest.mark.parametrize("fused", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext is not built")),
], ids=["mlx", "fused"])

# (in, out, groups, kernel, fstride, freq, fold a 1x1 conv): every strategy GroupedConv can pick
CASES = [
    (1, 64, 1, (3, 3), 1, 8, False),  # input conv: im2col
    (2, 8, 2, (3, 3), 1, 9, True),  # grouped input conv + pointwise folded
    (8, 8, 8, (1, 3), 2, 12, True),  # depthwise stride 2, even width
    (8, 8, 8, (1, 3), 2, 11, True),  # depthwise stride 2, odd width
    (8, 8, 8, (1, 3), 1, 6, True),  # depthwise stride 1
    (8, 1, 1, (1, 3), 1, 7, False),  # few outputs: tap_sum over frequency
    (8, 10, 2, (5, 1), 1, 6, True),  # time kernel, as many inputs as outputs: im2col
    (16, 4, 2, (5, 1), 1, 6, True),  # time kernel, few outputs (DFN3's df_convp): causal tap sum
    (12, 3, 3, (3, 1), 1, 5, False),  # the same without a pointwise conv
    (6, 6, 6, (1, 1), 1, 5, False),  # depthwise 1x1: per-channel scale
    (4, 6, 2, (2, 3), 2, 9, False),  # time and stride together
    (3, 5, 1, (1, 5), 3, 13, False),  # stride 3, two taps per phase
]


def _conv2d(conv: GroupedConv, x: mx.array, pointwise: mx.array | None) -> mx.array:
    kt, kf = conv.kernel
    xp = mx.pad(x, [(0, 0), (kt - 1, 0), (kf // 2, kf // 2), (0, 0)])
    y = mx.conv2d(xp, conv.weight, stride=(1, conv.fstride), groups=conv.groups)
    return y if pointwise is None else y @ pointwise


def _rel(a: mx.array, b: mx.array) -> float:
    return float(mx.abs(a - b).max() / (mx.abs(b).max() + 1e-30))


@FUSED
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"in{c[0]}-out{c[1]}-g{c[2]}-k{c[3][0]}x{c[3][1]}-s{c[4]}-f{c[5]}")
def test_grouped_conv_matches_conv2d(case, fused):
    cin, cout, groups, kernel, stride, freq, fold = case
    mx.random.seed(3)
    conv = GroupedConv(cin, cout, kernel, stride, groups, fused=fused)
    x = mx.random.normal((2, 7, freq, cin))
    pointwise = mx.random.normal((cout, cout)) if fold else None
    args = [conv.weight, x] + ([pointwise] if fold else [])

    def ours(w, x, *pw):
        conv.weight = w
        return conv(x, None, pointwise=pw[0] if pw else None)[0]

    def theirs(w, x, *pw):
        conv.weight = w
        return _conv2d(conv, x, pw[0] if pw else None)

    y_ours, y_ref = ours(*args), theirs(*args)
    assert y_ours.shape == y_ref.shape
    cotangent = mx.random.normal(y_ref.shape)
    _, g_ours = mx.vjp(ours, args, [cotangent])
    _, g_ref = mx.vjp(theirs, args, [cotangent])
    assert _rel(y_ours, y_ref) < RTOL
    for name, a, b in zip(("weight", "x", "pointwise"), g_ours, g_ref):
        assert _rel(a, b) < RTOL, name


@pytest.mark.parametrize("frames", [1, 4, 5, 6])
def test_time_kernel_at_and_below_its_length(frames):
    """A (5, 1) conv with few outputs takes the causal tap sum from kt frames on, and the padded
    tap_sum below; both equal conv2d, and both return the same history (the last 4 input frames)."""
    mx.random.seed(6)
    conv = GroupedConv(16, 4, (5, 1), 1, 2)
    x = mx.random.normal((2, frames, 6, 16))
    y, hist = conv(x)
    want = _conv2d(conv, x, None)
    assert y.shape == want.shape and _rel(y, want) < RTOL
    padded = mx.concatenate([mx.zeros((2, 4, 6, 16)), x], axis=1)
    assert mx.array_equal(hist, padded[:, -4:])


def test_history_continues_the_sequence():
    """Two halves with the returned history equal the whole sequence (streaming)."""
    mx.random.seed(4)
    conv = GroupedConv(2, 8, (3, 3), 1, 2)
    x = mx.random.normal((2, 9, 10, 2))
    whole, _ = conv(x)
    first, hist = conv(x[:, :4])
    second, _ = conv(x[:, 4:], hist)
    assert _rel(mx.concatenate([first, second], axis=1), whole) < RTOL


@pytest.mark.parametrize("kt,kf,s", [(1, 3, 2), (3, 3, 1), (2, 5, 3), (5, 1, 1)])
def test_gather_vjps_match_autodiff_of_slices(kt, kf, s):
    """im2col's and tap_sum's hand-written VJPs equal MLX autodiff of the plain slicing code."""
    mx.random.seed(5)
    x = mx.random.normal((2, 6 + kt, 11, 3))
    t, fo = x.shape[1] - kt + 1, (x.shape[2] - kf) // s + 1

    def taps(v):
        return [v[:, i : i + t, j : j + s * (fo - 1) + 1 : s] for i in range(kt) for j in range(kf)]

    plain_im2col = lambda v: mx.concatenate(taps(v), axis=-1)  # noqa: E731
    cot = mx.random.normal((2, t, fo, kt * kf * 3))
    assert _rel(im2col(x, kt, kf, s), plain_im2col(x)) == 0.0
    (g1,) = mx.vjp(lambda v: im2col(v, kt, kf, s), [x], [cot])[1]
    (g2,) = mx.vjp(plain_im2col, [x], [cot])[1]
    assert _rel(g1, g2) < RTOL

    y = mx.random.normal((2, 6 + kt, 11, kt * kf, 4))

    def plain_tap_sum(v):
        return sum(tp[..., k, :] for k, tp in enumerate(taps(v)))

    cot = mx.random.normal((2, t, fo, 4))
    assert _rel(tap_sum(y, kt, kf, s), plain_tap_sum(y)) < RTOL
    (g1,) = mx.vjp(lambda v: tap_sum(v, kt, kf, s), [y], [cot])[1]
    (g2,) = mx.vjp(plain_tap_sum, [y], [cot])[1]
    assert _rel(g1, g2) == 0.0  # pure data movement: bit-exact


@pytest.mark.parametrize("kt,frames", [(2, 2), (3, 7), (5, 5), (5, 9)])
def test_causal_tap_sum_and_its_vjp_match_tap_sum_on_the_padded_input(kt, frames):
    """causal_tap_sum(y) equals tap_sum over y padded with kt - 1 zero frames, and its VJP equals
    autodiff of that padding + tap_sum (exactly: the same sums of the same terms; data movement)."""
    mx.random.seed(8)
    y = mx.random.normal((2, frames, 5, kt, 3))
    padded = lambda v: tap_sum(mx.pad(v, [(0, 0), (kt - 1, 0), (0, 0), (0, 0), (0, 0)]), kt, 1, 1)  # noqa: E731
    assert _rel(causal_tap_sum(y, kt), padded(y)) < RTOL
    cot = mx.random.normal((2, frames, 5, 3))
    (g1,) = mx.vjp(lambda v: causal_tap_sum(v, kt), [y], [cot])[1]
    (g2,) = mx.vjp(padded, [y], [cot])[1]
    assert g1.shape == y.shape and _rel(g1, g2) == 0.0
    with pytest.raises(ValueError, match="kt=3"):
        causal_tap_sum(y[:, :2], 3)


@FUSED
def test_transposed_conv_with_folded_pointwise_equals_conv_then_pointwise(fused):
    mx.random.seed(6)
    conv = DepthwiseTransposedConv(8, fused=fused)
    x, pw = mx.random.normal((2, 5, 6, 8)), mx.random.normal((8, 8))

    def folded(w, x, pw):
        conv.weight = w
        return conv(x, pointwise=pw)

    def separate(w, x, pw):
        conv.weight = w
        return conv(x) @ pw

    cot = mx.random.normal((2, 5, 12, 8))
    (y1,), g1 = mx.vjp(folded, [conv.weight, x, pw], [cot])
    (y2,), g2 = mx.vjp(separate, [conv.weight, x, pw], [cot])
    assert _rel(y1, y2) < RTOL
    for a, b in zip(g1, g2):
        assert _rel(a, b) < RTOL


def test_transposed_conv_matches_mlx_conv_transpose2d():
    # DFN3's ConvTranspose2d((1, 3), stride (1, 2), padding (0, 1), output_padding (0, 1), groups = ch)
    # on both paths, against MLX's own transposed conv.
    mx.random.seed(7)
    x = mx.random.normal((2, 5, 6, 8))
    for fused in [False] + ([True] if _extension.available() else []):
        conv = DepthwiseTransposedConv(8, fused=fused)
        ref = mx.conv_transpose2d(x, conv.weight, stride=(1, 2), padding=(0, 1), output_padding=(0, 1), groups=8)
        assert _rel(conv(x), ref) < RTOL, fused
