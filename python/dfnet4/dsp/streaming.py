"""Streaming STFT: libdf's frame-by-frame analysis and synthesis, with carried memories.

`analysis(hops, memory)` turns consecutive hops of samples into the STFT frames `dsp.stft` gives
for them (frame k windows the hop before and hop k); `synthesis(spec, memory)` overlap-adds
frames back into hops, as `dsp.istft` does. Both take any number of hops at once (vectorised)
and return the memory that continues the stream, so chunked processing equals one-shot
processing exactly: the per-frame arithmetic is the same functions `stft`/`istft` use.

Timing: the memory of a fresh analysis is one hop of zeros, so the first frame covers
[-hop, hop) like `stft`'s frame 0. Synthesis of frame k emits samples [k hop - hop, k hop): the
first hop a fresh synthesis emits lies before the signal start.
"""

from __future__ import annotations

import mlx.core as mx

from dfnet4.dsp.stft import analyse_hops, synthesise_frames


def analysis_init(batch: int, hop_size: int) -> mx.array:
    return mx.zeros((batch, hop_size))


def analysis(hops: mx.array, memory: mx.array) -> tuple[mx.array, mx.array]:
    """hops (batch, n, hop) float32, memory (batch, hop) -> spec (batch, n, hop + 1, 2), memory."""
    if hops.ndim != 3 or memory.shape != (hops.shape[0], hops.shape[2]):
        raise ValueError(
            f"analysis: hops must have shape (batch, n, hop) and memory (batch, hop), got "
            f"{tuple(hops.shape)} and {tuple(memory.shape)}"
        )
    if hops.shape[1] == 0:
        return mx.zeros((hops.shape[0], 0, hops.shape[2] + 1, 2)), memory
    chunks = mx.concatenate([memory[:, None], hops.astype(mx.float32)], axis=1)
    return analyse_hops(chunks), chunks[:, -1]


def synthesis_init(batch: int, hop_size: int) -> mx.array:
    return mx.zeros((batch, hop_size))


def synthesis(spec: mx.array, memory: mx.array) -> tuple[mx.array, mx.array]:
    """spec (batch, n, hop + 1, 2), memory (batch, hop) -> samples (batch, n * hop), memory."""
    hop = spec.shape[2] - 1
    if spec.ndim != 4 or spec.shape[3] != 2 or memory.shape != (spec.shape[0], hop):
        raise ValueError(
            f"synthesis: spec must have shape (batch, n, freqs, 2) and memory (batch, freqs - 1), got "
            f"{tuple(spec.shape)} and {tuple(memory.shape)}"
        )
    b, n = spec.shape[:2]
    if n == 0:
        return mx.zeros((b, 0)), memory
    y = synthesise_frames(spec)  # (b, n, 2 hop)
    tails = mx.concatenate([memory[:, None], y[:, :-1, hop:]], axis=1)  # second half of the frame before
    return (y[:, :, :hop] + tails).reshape(b, n * hop), y[:, -1, hop:]
