"""dfnet4.ops.gru against mlx.nn.GRU and against the pure-MLX reference loop: every output and
every gradient (x, Wx, Wh, b, bhn, h0)."""

from __future__ import annotations

import mlx.core as mx
import pytest

from dfnet4 import _extension

pytestmark = pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext not built")

from dfnet4.ops import gru  # noqa: E402
from dfnet4.reference import gru as gru_reference  # noqa: E402
from gru_cases import cotangent, make_inputs, max_scaled_error, nn_gru, value_and_grads  # noqa: E402

# float32 throughout. The fused kernel sums the hidden-to-hidden products in a different order
# than MLX's matmul (blocked, FMA), so each step differs by a few ulps; the recurrence carries
# that forward and weight gradients sum batch*time terms. Observed over these cases: <= 2.5e-7
# (states) and <= 1.5e-6 (gradients, Wh) of the largest magnitude; the tolerances
# leave ~10x headroom and stay far below any real error (a wrong gate or term gives >= 1e-3).
FWD_TOL = 2e-6
GRAD_TOL = 2e-5


def _compare(inputs, reference_fn):
    B, T = inputs["x"].shape[:2]
    H = inputs["Wh"].shape[1]
    cot = cotangent((B, T, H))
    hs, grads = value_and_grads(gru, inputs, cot)
    hs_ref, grads_ref = value_and_grads(reference_fn, inputs, cot)
    assert hs.dtype == mx.float32 and hs.shape == (B, T, H)
    assert max_scaled_error(hs, hs_ref) < FWD_TOL
    assert grads.keys() == grads_ref.keys()
    for name in grads:
        err = max_scaled_error(grads[name], grads_ref[name])
        assert err < GRAD_TOL, f"gradient of {name}: scaled error {err:.2e}"


# Short sequences against mlx.nn.GRU itself (its backward is quadratic in time).
# (batch, time, input, hidden, biases, h0): every hidden size, batch 1 and 16, time 1 and 2.
NN_CASES = [
    (1, 1, 4, 1, True, True),
    (16, 2, 5, 7, False, False),
    (16, 2, 16, 64, True, False),
    (1, 2, 32, 256, True, True),
    (16, 1, 8, 256, False, False),
    (1, 2, 8, 512, True, False),
    (16, 2, 6, 512, False, True),
    (16, 24, 12, 64, True, True),
]


@pytest.mark.parametrize("B,T,D,H,bias,h0", NN_CASES)
def test_matches_mlx_nn_gru(B, T, D, H, bias, h0, device):
    _compare(make_inputs(B, T, D, H, bias=bias, h0=h0, seed=B * 1000 + H), nn_gru)


# Long sequences against the reference loop (linear-time backward).
REF_CASES = [
    (1, 1000, 3, 7, True, True),
    (1, 1000, 8, 64, False, False),
    (16, 500, 4, 7, True, False),
    (1, 500, 16, 256, True, True),
    (1, 500, 8, 512, False, True),
]


@pytest.mark.parametrize("B,T,D,H,bias,h0", REF_CASES)
def test_long_sequences_match_reference(B, T, D, H, bias, h0, device):
    _compare(make_inputs(B, T, D, H, bias=bias, h0=h0, seed=T + H), gru_reference)


def test_reference_matches_mlx_nn_gru(device):
    """The oracle itself agrees with mlx.nn.GRU (same equations, same parameter layout)."""
    inputs = make_inputs(3, 5, 4, 6, seed=3)
    cot = cotangent((3, 5, 6))
    hs, grads = value_and_grads(gru_reference, inputs, cot)
    hs_nn, grads_nn = value_and_grads(nn_gru, inputs, cot)
    assert max_scaled_error(hs, hs_nn) < 1e-6
    for name in grads:
        assert max_scaled_error(grads[name], grads_nn[name]) < 1e-6, name


@pytest.mark.parametrize("which", ["b", "bhn"])
def test_one_bias_only(which, device):
    """b without bhn and bhn without b (mlx.nn.GRU cannot express these; the reference can)."""
    inputs = make_inputs(4, 9, 5, 7, seed=5)
    inputs["bhn" if which == "b" else "b"] = None
    _compare(inputs, gru_reference)


def test_last_state_continues_the_sequence(device):
    """Running two halves with h0 = last state of the first equals one run over the whole."""
    inputs = make_inputs(2, 40, 5, 9, seed=11)
    whole = gru(**inputs)
    first = gru(**{**inputs, "x": inputs["x"][:, :17]})
    second = gru(**{**inputs, "x": inputs["x"][:, 17:], "h0": first[:, -1]})
    assert max_scaled_error(mx.concatenate([first, second], axis=1), whole) < 1e-6
