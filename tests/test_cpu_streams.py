"""dfnet4.cpu_streams: the batch pieces, and the multi-resolution STFT loss split over CPU streams
against the same loss in one piece (value and gradient to float32 rounding, eager and compiled)."""

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
def test_split_loss_matches_one_piece(monkeypatch, batch):
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
    for value, grad in (value_and_grad(), mx.compile(value_and_grad)()):
        np.testing.assert_allclose(value.item(), one_value.item(), rtol=1e-6)
        np.testing.assert_allclose(np.array(grad), np.array(one_grad), rtol=1e-5,
                                   atol=1e-6 * np.abs(np.array(one_grad)).max())


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
