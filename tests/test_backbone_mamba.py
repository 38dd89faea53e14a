"""mamba-specific behaviour: initialisation, fused-path selection, fused vs reference parity.
(Shapes, streaming == offline, gradients and bad x are in test_backbones_common.py.)"""

import math

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

import dfnet4._extension
from dfnet4.backbones import create
from dfnet4.backbones.mamba import SqueezedMamba

IN, HIDDEN, T = 8, 16, 10


def build(**opts):
    mx.random.seed(9)
    m = create("mamba", IN, HIDDEN, IN, linear_groups=2, **{"fused": False, "d_state": 4, **opts})
    mx.eval(m.parameters())
    return m


def test_initialisation_follows_mamba():
    m = build(d_state=6, expand=3, d_conv=5, num_layers=3)
    assert len(m.core.layers) == 3
    for blk in m.core.layers:
        d_inner = 3 * HIDDEN
        assert blk.in_proj.weight.shape == (2 * d_inner, HIDDEN)
        assert blk.conv_weight.shape == (5, d_inner)
        assert blk.x_proj.weight.shape == (blk.dt_rank + 2 * 6, d_inner)
        assert blk.dt_rank == math.ceil(HIDDEN / 16)
        # S4D-real: A = -exp(A_log) = -(1, 2, ..., d_state) for every channel
        expected_A = -mx.broadcast_to(mx.arange(1, 7, dtype=mx.float32), (d_inner, 6))
        assert mx.allclose(-mx.exp(blk.A_log), expected_A, rtol=1e-6).item()
        assert mx.array_equal(blk.D, mx.ones((d_inner,))).item()
        # softplus(dt_bias) is the initial step size, drawn log-uniform in [1e-3, 1e-1]
        dt = nn.softplus(blk.dt_bias)
        assert (dt.min().item() >= 1e-3 * (1 - 1e-4)) and (dt.max().item() <= 1e-1 * (1 + 1e-4))
        assert dt.max().item() / dt.min().item() > 10  # spread over the range, not one value


def test_state_shapes():
    m = build(d_state=5, d_conv=3)
    _, state = m(mx.zeros((3, T, IN)))
    assert len(state) == 2
    for s in state:
        assert s["conv"].shape == (3, 2, 2 * HIDDEN)
        assert s["ssm"].shape == (3, 2 * HIDDEN, 5)


def test_d_conv_1_has_an_empty_conv_window():
    """With d_conv=1 there is no conv window; streaming still matches (only the SSM carries state)."""
    m = build(d_conv=1)
    x = mx.random.normal((2, T, IN), key=mx.random.key(1))
    y_off, _ = m(x)
    y1, s = m(x[:, :4])
    y2, _ = m(x[:, 4:], s)
    assert s[0]["conv"].shape == (2, 0, 2 * HIDDEN)
    assert mx.allclose(mx.concatenate([y1, y2], axis=1), y_off, atol=1e-5).item()


def test_fused_true_without_extension_is_a_runtime_error(monkeypatch):
    monkeypatch.setattr(dfnet4._extension, "available", lambda: False)
    with pytest.raises(RuntimeError, match="fused=True.*extension"):
        SqueezedMamba(IN, HIDDEN, IN, linear_groups=2, fused=True)


@pytest.mark.parametrize("have_extension", [False, True])
def test_fused_none_follows_the_extension(monkeypatch, have_extension):
    monkeypatch.setattr(dfnet4._extension, "available", lambda: have_extension)
    m = SqueezedMamba(IN, HIDDEN, IN, linear_groups=2)
    assert m.fused is have_extension
    assert all(blk.fused is have_extension for blk in m.core.layers)


def test_fused_false_never_calls_the_fused_op(monkeypatch):
    import dfnet4.ops

    def boom(*a, **k):
        raise AssertionError("fused op called with fused=False")

    monkeypatch.setattr(dfnet4.ops, "selective_scan", boom)
    monkeypatch.setattr(dfnet4.ops, "causal_conv1d", boom)
    build(fused=False)(mx.zeros((1, 3, IN)))


def test_fused_runs_the_fused_conv_with_the_streaming_window(monkeypatch, device):
    import dfnet4.ops

    calls = []
    real = dfnet4.ops.causal_conv1d

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(dfnet4.ops, "causal_conv1d", spy)
    m = build(fused=True, num_layers=2)
    _, state = m(mx.random.normal((1, 3, IN), key=mx.random.key(4)))
    m(mx.random.normal((1, 2, IN), key=mx.random.key(5)), state)
    assert len(calls) == 4  # two layers, two calls
    assert all(c["activation"] == "silu" and c["return_window"] for c in calls)
    # a fresh sequence starts from a zero window (the fused block takes arrays only); the next
    # call continues from the returned one
    first = calls[0]["window"]
    assert first.shape == (1, 3, 2 * HIDDEN) and not mx.any(first).item()
    assert mx.any(state[0]["conv"]).item()
    assert mx.array_equal(calls[2]["window"], state[0]["conv"]).item()


def test_fused_conv_wider_than_its_kernels_is_a_value_error():
    with pytest.raises(ValueError, match="d_conv must be <= 8"):
        SqueezedMamba(IN, HIDDEN, IN, linear_groups=2, fused=True, d_conv=9)
    SqueezedMamba(IN, HIDDEN, IN, linear_groups=2, fused=False, d_conv=9)  # the reference has no limit


@pytest.mark.parametrize(
    "opts", [dict(d_state=0), dict(d_conv=0), dict(expand=0), dict(num_layers=0), dict(d_state=2.0), dict(recompute="no"),
             dict(keep_in_proj="yes")]
)
def test_bad_options_are_value_errors_naming_the_option(opts):
    (word,) = opts
    with pytest.raises(ValueError, match=word):
        SqueezedMamba(IN, HIDDEN, IN, linear_groups=2, fused=False, **opts)


@pytest.mark.parametrize("recompute, keep_in_proj", [(True, False), (True, True), (False, False)])
def test_fused_matches_reference_outputs_state_and_every_gradient(recompute, keep_in_proj, device):
    """The fused op and the reference are two implementations of one function: same parameters,
    same input -> same output, same final state, same gradient for every parameter. Needs the
    compiled extension (CI builds it)."""
    assert dfnet4._extension.available(), "the compiled extension is needed for the fused path"
    # d_state=16 (the default) and 37 frames split 21 + 16: the fused backward checkpoints every
    # 16 steps, so this crosses full and partial chunks in both pieces
    ref = build(fused=False, d_state=16)
    fused = build(fused=True, d_state=16, recompute=recompute, keep_in_proj=keep_in_proj)
    fused.update(ref.parameters())
    length = 37
    x = mx.random.normal((2, length, IN), key=mx.random.key(2))
    w = mx.random.normal((2, length, IN), key=mx.random.key(3))

    def loss(model):
        y1, state = model(x[:, :21])  # two pieces: also exercises h0 and the returned state
        y2, state = model(x[:, 21:], state)
        y = mx.concatenate([y1, y2], axis=1)
        return (y * w).sum() + sum(s["ssm"].sum() for s in state), (y, state)

    (l_ref, (y_ref, s_ref)), g_ref = nn.value_and_grad(ref, loss)(ref)
    (l_fus, (y_fus, s_fus)), g_fus = nn.value_and_grad(fused, loss)(fused)
    # Both run float32 with different summation orders (the kernel's state reduction, its chunked
    # recompute in the backward), so they agree to a few ulp of each array's scale; measured
    # <= 4e-7 of max|ref| for every array. Bound: 1e-5 of max|ref| per array (scale-relative, so
    # small gradients such as dt_proj's ~1e-3 are held as tightly as large ones).
    def close(a, b):
        return mx.abs(a - b).max().item() <= 1e-5 * mx.abs(b).max().item()

    assert close(l_fus, l_ref), (l_fus, l_ref)
    assert close(y_fus, y_ref), mx.abs(y_fus - y_ref).max()
    for (path, a), (_, b) in zip(tree_flatten(s_fus), tree_flatten(s_ref)):
        assert close(a, b), path
    grads_fus, grads_ref = dict(tree_flatten(g_fus)), dict(tree_flatten(g_ref))
    assert grads_fus.keys() == grads_ref.keys()
    for path, g in grads_ref.items():
        assert mx.abs(g).max().item() > 0, path
        assert close(grads_fus[path], g), (path, mx.abs(grads_fus[path] - g).max())


@pytest.mark.parametrize("recompute, keep_in_proj", [(True, False), (True, True), (False, False)])
def test_recompute_option_reaches_every_block_from_the_model_config(recompute, keep_in_proj):
    from dfnet4.model import DfNet4Config

    table = {"recompute": recompute, "keep_in_proj": keep_in_proj}
    opts = DfNet4Config.from_dict({"backbone": "mamba", "mamba": table}).backbone_options()
    assert opts["recompute"] is recompute and opts["keep_in_proj"] is keep_in_proj
    m = build(fused=True, num_layers=2, recompute=opts["recompute"], keep_in_proj=opts["keep_in_proj"])
    # recompute: each block runs under its custom backward; otherwise plain autodiff of the same math
    assert all((blk._block is not None) is recompute for blk in m.core.layers)
    assert all(blk._keep_in_proj is keep_in_proj for blk in m.core.layers)
