"""dfnet4.cpu_streams: the batch pieces; the multi-resolution STFT loss and the model's deep filter
+ ERB mask in pieces on CPU streams against one piece (the same to the bit) and, for the loss,
against the batch's mean in one call (to float32 rounding), eager and compiled."""

import mlx.core as mx
import numpy as np
import pytest

from dfnet4 import cpu_streams
from dfnet4.train.losses import LossConfig, multires_stft_loss


@pytest.mark.parametrize("batch, threads, sizes", [(8, 2, [4, 4]), (5, 2, [2, 3]), (3, 8, [1, 1, 1]),
                                                   (1, 4, [1]), (8, 1, [8])])
def test_pieces_cover_the_batch(monkeypatch, batch, threads, sizes):
    monkeypatch.setenv("DFNET4_NUM_THREADS", str(threads))
    pieces = cpu_streams.batch_pieces(batch)
    assert [p.stop - p.start for p, _ in pieces] == sizes
    assert pieces[0][0].start == 0 and pieces[-1][0].stop == batch
    assert all(a[0].stop == b[0].start for a, b in zip(pieces, pieces[1:]))
    streams = [s for _, s in pieces]
    assert streams[0] is None and all(s is not None and s.device == mx.cpu for s in streams[1:])
    assert len({id(s) for s in streams[1:]}) == len(streams) - 1


def test_pieces_reject_an_empty_batch():
    with pytest.raises(ValueError, match="batch must be >= 1"):
        cpu_streams.batch_pieces(0)


@pytest.mark.parametrize("batch", [2, 3])
def test_split_loss_does_not_depend_on_the_pieces(monkeypatch, batch):
    """The loss is formed row by row, so its value and gradient are the same to the bit whatever the
    thread count (one piece, or one per row), eager and compiled; and equal to the mean over the
    whole batch in one call to float32 rounding."""
    from dfnet4.train.losses import _multires_terms

    rng = np.random.default_rng(batch)
    enh = mx.array(rng.standard_normal((batch, 4000)).astype(np.float32) * 0.1)
    clean = mx.array(rng.standard_normal((batch, 4000)).astype(np.float32) * 0.1)
    cfg = LossConfig(mr_fft_sizes=[256, 512])

    def value_and_grad():
        return mx.value_and_grad(lambda e: multires_stft_loss(e, clean, cfg))(enh)

    monkeypatch.setenv("DFNET4_NUM_THREADS", "1")
    one_value, one_grad = value_and_grad()
    monkeypatch.setenv("DFNET4_NUM_THREADS", str(batch))
    assert len(cpu_streams.batch_pieces(batch)) == batch
    value, grad = value_and_grad()
    assert mx.array_equal(value, one_value).item() and mx.array_equal(grad, one_grad).item()
    c_value, c_grad = mx.compile(value_and_grad)()
    np.testing.assert_allclose(c_value.item(), one_value.item(), rtol=1e-6)
    np.testing.assert_allclose(np.array(c_grad), np.array(one_grad), rtol=1e-5,
                               atol=1e-6 * np.abs(np.array(one_grad)).max())
    whole_value, whole_grad = mx.value_and_grad(lambda e: _multires_terms(e, clean, cfg, None))(enh)
    np.testing.assert_allclose(value.item(), whole_value.item(), rtol=1e-6)
    np.testing.assert_allclose(np.array(grad), np.array(whole_grad), rtol=1e-5,
                               atol=1e-6 * np.abs(np.array(whole_grad)).max())


def test_model_output_and_gradients_match_one_piece(monkeypatch):
    """DfNet4's deep filter + ERB mask in batch pieces: each row's values are its own, so the
    output and every parameter gradient equal one piece's exactly."""
    from mlx.utils import tree_flatten
    import mlx.nn as nn

    from dfnet4.model import DfNet4, DfNet4Config

    mx.random.seed(0)
    model = DfNet4(DfNet4Config(backbone="gru"))
    spec = mx.random.normal((3, 12, 481, 2), key=mx.random.key(7)) * 0.1

    def run():
        loss_and_grad = nn.value_and_grad(model, lambda s: mx.sum(model(s)[0] ** 2))
        (enh, _), (_, grads) = model(spec), loss_and_grad(spec)
        return enh, dict(tree_flatten(grads))

    monkeypatch.setenv("DFNET4_NUM_THREADS", "1")
    one_enh, one_grads = run()
    monkeypatch.setenv("DFNET4_NUM_THREADS", "3")
    enh, grads = run()
    assert mx.array_equal(enh, one_enh).item()
    assert grads.keys() == one_grads.keys()
    assert all(mx.array_equal(grads[k], one_grads[k]).item() for k in grads)
