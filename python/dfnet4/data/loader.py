"""Batches of (clean, noisy) for one rank, produced by a background thread.

Sample indices of epoch e are 0..samples_per_epoch-1; global batch b holds indices
[b*B*W, (b+1)*B*W) and rank r takes its contiguous B of them, so the ranks of a run together see
every sample once, and the position (epoch, batch) fully describes where a run is.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np

from dfnet4.data.mixer import Mixer


class BatchLoader:
    def __init__(self, mixer: Mixer, batch_size: int, samples_per_epoch: int, rank: int = 0,
                 world_size: int = 1, prefetch: int = 4):
        if batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size}, need >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: got {rank}, need 0 <= rank < world_size={world_size}")
        self.batches_per_epoch = samples_per_epoch // (batch_size * world_size)
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"samples_per_epoch: got {samples_per_epoch}, need at least batch_size*world_size="
                f"{batch_size * world_size} for one batch per epoch"
            )
        self.mixer, self.batch_size, self.rank, self.world_size = mixer, batch_size, rank, world_size
        self.prefetch = max(1, prefetch)

    def indices(self, batch: int) -> range:
        first = (batch * self.world_size + self.rank) * self.batch_size
        return range(first, first + self.batch_size)

    def batch(self, epoch: int, batch: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.mixer.sample(split, epoch, i) for i in self.indices(batch)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def iterate(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (batch, clean, noisy) for batches start_batch.. of `epoch`, prepared ahead in a thread."""
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item) -> bool:
            """Queue `item` unless the consumer has stopped (then a full queue must not block us)."""
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for b in range(start_batch, self.batches_per_epoch):
                    if not put((b, *self.batch(epoch, b))):
                        return
                put(None)
            except BaseException as exc:  # hand the error to the consumer instead of dying silently
                put(exc)

        thread = threading.Thread(target=produce, name=f"dfnet4-prefetch-e{epoch}", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)


def validation_set(mixer: Mixer, count: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fixed validation batches (split 'valid', epoch 0, indices 0..count-1), the same every epoch."""
    out = []
    for first in range(0, count, batch_size):
        pairs = [mixer.sample("valid", 0, i) for i in range(first, min(count, first + batch_size))]
        out.append((np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])))
    return out
