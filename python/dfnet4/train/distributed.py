"""Data parallelism over mx.distributed (the group mlx.launch sets up: ring over TCP, MPI, ...)."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn


@dataclass
class Dist:
    group: object | None
    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, grads):
        return grads if self.size == 1 else nn.average_gradients(grads, group=self.group)

    def mean_scalar(self, x: float) -> float:
        """Mean of a Python float over ranks (e.g. the logged loss)."""
        if self.size == 1:
            return x
        return float(mx.distributed.all_sum(mx.array(x, mx.float32), group=self.group).item()) / self.size

    def mean_and_any(self, x: float, flag: bool) -> tuple[float, bool]:
        """(mean of x over ranks, whether flag is set on any rank) in one all_sum."""
        if self.size == 1:
            return x, flag
        s = mx.distributed.all_sum(mx.array([x, float(flag)], mx.float32), group=self.group)
        return float(s[0].item()) / self.size, bool(s[1].item() > 0)

    def barrier(self) -> None:
        if self.size > 1:
            mx.eval(mx.distributed.all_sum(mx.array(1.0), group=self.group))

    def broadcast_int(self, value: int) -> int:
        """Rank 0's value on every rank (all ranks agree on e.g. the resume step)."""
        if self.size == 1:
            return value
        x = mx.array(value if self.rank == 0 else 0, mx.int32)
        return int(mx.distributed.all_sum(x, group=self.group).item())


def init() -> Dist:
    """The distributed group when launched by mlx.launch (or with MLX_RANK/MLX_HOSTFILE set), else a
    single-process stand-in."""
    if not mx.distributed.is_available():
        return Dist(None, 0, 1)
    group = mx.distributed.init()
    return Dist(group, group.rank(), group.size())
