"""The gru backbone (DeepFilterNet3's SqueezedGRU_S): registry, numerics, state, fused/reference parity."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from dfnet4 import _extension, backbones
from dfnet4.backbones.gru import SqueezedGRU_S

needs_ext = pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext not built (tools/dev_build.sh)")


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_squeezed_gru(p: dict, x: np.ndarray, groups: int, layers: int, h0=None) -> np.ndarray:
    """DFN3's SqueezedGRU_S in float64 numpy: grouped linear + ReLU, PyTorch GRU, grouped linear + ReLU."""

    def grouped(w, v):
        b, t, _ = v.shape
        g, i, o = w.shape
        return np.einsum("btgi,gio->btgo", v.reshape(b, t, g, i), w).reshape(b, t, g * o)

    h = np.maximum(grouped(p["linear_in.weight"], x), 0)
    for li in range(layers):
        wx, wh = p[f"core.layers.{li}.Wx"], p[f"core.layers.{li}.Wh"]
        b, bhn = p[f"core.layers.{li}.b"], p[f"core.layers.{li}.bhn"]
        hid = wh.shape[1]
        s = np.zeros((x.shape[0], hid)) if h0 is None else h0[li]
        out = []
        for t in range(h.shape[1]):
            gx = h[:, t] @ wx.T + b
            gh = s @ wh.T
            r = _sigmoid(gx[:, :hid] + gh[:, :hid])
            z = _sigmoid(gx[:, hid : 2 * hid] + gh[:, hid : 2 * hid])
            n = np.tanh(gx[:, 2 * hid :] + r * (gh[:, 2 * hid :] + bhn))
            s = (1 - z) * n + z * s
            out.append(s)
        h = np.stack(out, 1)
    if "linear_out.weight" in p:
        h = np.maximum(grouped(p["linear_out.weight"], h), 0)
    return h


def make(output_size=24, layers=2, fused=False, **kw):
    mx.random.seed(1)
    return backbones.create("gru", 16, 8, output_size, num_layers=layers, linear_groups=4, fused=fused, **kw)


def test_registered_and_shapes():
    assert "gru" in backbones.names()
    bb = make()
    assert isinstance(bb, SqueezedGRU_S)
    y, state = bb(mx.random.normal((3, 7, 16)))
    assert y.shape == (3, 7, 24) and len(state) == 2 and state[0].shape == (3, 8)
    y, _ = make(output_size=None)(mx.random.normal((3, 7, 16)))
    assert y.shape == (3, 7, 8)
    y, _ = make(output_size=16, skip=True)(mx.random.normal((3, 7, 16)))
    assert y.shape == (3, 7, 16)


@pytest.mark.parametrize("output_size", [24, None])
def test_matches_deepfilternet_squeezed_gru(output_size):
    bb = make(output_size)
    x = np.random.default_rng(0).standard_normal((2, 9, 16))
    p = {k: np.array(v, dtype=np.float64) for k, v in tree_flatten(bb.parameters())}
    y, state = bb(mx.array(x.astype(np.float32)))
    ref = numpy_squeezed_gru(p, x, 4, 2)
    np.testing.assert_allclose(np.array(y), ref, atol=1e-5)  # float32 vs float64 over 9 steps


def test_state_continues_the_sequence():
    bb = make()
    x = mx.random.normal((2, 12, 16))
    whole, _ = bb(x)
    a, st = bb(x[:, :5])
    b, _ = bb(x[:, 5:], st)
    np.testing.assert_allclose(np.array(mx.concatenate([a, b], 1)), np.array(whole), atol=1e-6)


def test_gradients_reach_every_parameter():
    bb = make()
    x = mx.random.normal((2, 6, 16))

    def loss(params):
        bb.update(params)
        return mx.sum(bb(x)[0] ** 2)

    grads = tree_flatten(mx.grad(loss)(bb.trainable_parameters()))
    assert grads and all(np.any(np.array(g) != 0) for _, g in grads)


def test_bad_input():
    bb = make()
    with pytest.raises(ValueError, match="x must have shape"):
        bb(mx.zeros((2, 5, 15)))
    with pytest.raises(ValueError, match="state"):
        bb(mx.zeros((2, 5, 16)), [mx.zeros((2, 8))])
    with pytest.raises(ValueError, match="num_layers"):
        make(layers=0)


def test_fused_without_extension_is_an_error(monkeypatch):
    def missing():
        raise ImportError("not built")

    monkeypatch.setattr(_extension, "load", missing)
    monkeypatch.setattr(_extension, "available", lambda: False)
    with pytest.raises(RuntimeError, match="fused=True"):
        make(fused=True)
    assert make(fused=None).core.fused is False


@needs_ext
def test_fused_matches_reference_outputs_and_gradients(device):
    x = mx.random.normal((3, 11, 16), key=mx.random.key(3))
    ref, fused = make(fused=False), make(fused=True)
    assert fused.core.fused and not ref.core.fused
    fused.update(ref.parameters())
    h0 = [mx.random.normal((3, 8), key=mx.random.key(4)) * 0.5 for _ in range(2)]

    def run(bb):
        def loss(params, x):
            bb.update(params)
            y, st = bb(x, h0)
            return mx.sum(y * mx.cos(y)) + sum(mx.sum(s) for s in st)

        return mx.value_and_grad(loss, argnums=(0, 1))(bb.trainable_parameters(), x)

    (lr, (gr, gxr)), (lf, (gf, gxf)) = run(ref), run(fused)
    # same float32 math in another order: agreement to ~1e-6 relative
    np.testing.assert_allclose(np.array(lf), np.array(lr), rtol=1e-5)
    np.testing.assert_allclose(np.array(gxf), np.array(gxr), rtol=1e-4, atol=1e-5)
    for (k, a), (_, b) in zip(tree_flatten(gf), tree_flatten(gr)):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-5, err_msg=k)
