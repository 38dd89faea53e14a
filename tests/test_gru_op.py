"""dfnet4.ops.gru beyond parity: float64 finite differences, the size check of a shapeless replay,
dtype promotion, a broadcast initial state. What every fused op keeps (compile, views, half and
float64 inputs, threads, instruction-set variants, bad input, refused transforms):
tests/test_fused_op_contract.py."""

from __future__ import annotations

import mlx.core as mx
import pytest

from dfnet4 import _extension

pytestmark = pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext not built")

from dfnet4.ops import gru  # noqa: E402
from dfnet4.reference import gru as gru_reference  # noqa: E402
from gradient_check import directional_derivatives  # noqa: E402
from gru_cases import cotangent, make_inputs, max_scaled_error  # noqa: E402


@pytest.mark.parametrize("bias,h0", [(True, True), (False, False)])
@pytest.mark.cpu_only("float64 (Metal has no double)")
def test_float64_finite_differences(bias, h0):
    """Hand-written backward vs central differences of the fused forward itself, in float64.

    Directional derivatives along random directions, eps 1e-6: truncation error ~eps^2 and
    rounding ~1e-16/eps = 1e-10, so agreement to 1e-7 relative is what a correct gradient gives
    and a wrong term (>= 1e-3 relative) cannot pass."""
    inputs = make_inputs(3, 6, 4, 5, bias=bias, h0=h0, seed=7, dtype=mx.float64)
    cot = cotangent((3, 6, 5), dtype=mx.float64)
    names = [k for k, v in inputs.items() if v is not None]

    def loss(*values):
        return (gru(**{**inputs, **dict(zip(names, values))}) * cot).sum()

    for i, an, fd in directional_derivatives(loss, [inputs[k] for k in names], seed=0, directions=2):
        assert abs(fd - an) <= 1e-7 * max(1.0, abs(an)), f"{names[i]}: fd {fd} vs analytic {an}"


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


def test_mixed_precision_promotes(device):
    inputs = make_inputs(2, 3, 4, 5, seed=1)
    inputs["x"] = inputs["x"].astype(mx.float16)
    assert gru(**inputs).dtype == mx.float32


def test_a_broadcast_initial_state(device):
    # A zero-stride h0 (one row broadcast over the batch) is read as the rows it stands for.
    base = make_inputs(3, 10, 4, 6, seed=4)
    row = base["h0"][:1]
    out = gru(**{**base, "h0": mx.broadcast_to(row, (3, 6))})
    ref = gru(**{**base, "h0": mx.repeat(row, 3, axis=0)})
    assert mx.array_equal(out, ref)
