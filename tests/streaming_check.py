"""Offline-vs-streaming check for DfNet4, reusable for every backbone.

`stream(model, spec, chunks)` feeds the spectrum through `model.init_state / step / flush` in
chunks of the given frame counts; `assert_streaming_matches_offline` compares that with `model(spec)`.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def stream(model, spec: mx.array, chunks: list[int]) -> mx.array:
    assert sum(chunks) == spec.shape[1], "chunks must add up to the number of frames"
    state = model.init_state(spec.shape[0])
    outs, start = [], 0
    for n in chunks:
        out, state = model.step(spec[:, start : start + n], state)
        mx.eval(out, state)  # evaluate per chunk, as a real stream would
        outs.append(out)
        start += n
    out, _ = model.flush(state)
    outs.append(out)
    return mx.concatenate(outs, axis=1)


def assert_streaming_matches_offline(model, spec: mx.array, chunks: list[int], rtol: float = 1e-4) -> None:
    """Streaming output == offline output up to float32 reassociation.

    The running norms are computed blockwise offline and per chunk in streaming, and matmuls
    of different row counts may sum in another order: ~1e-6 relative differences that the
    recurrent parts carry along; `rtol` is relative to the largest output magnitude.
    """
    model.eval()  # BatchNorm must use its running statistics to be frame-local
    offline, _ = model(spec)
    streamed = stream(model, spec, chunks)
    assert streamed.shape == offline.shape, (streamed.shape, offline.shape)
    off, st = np.array(offline), np.array(streamed)
    scale = np.abs(off).max()
    assert scale > 0
    np.testing.assert_allclose(st, off, rtol=0, atol=rtol * scale)
