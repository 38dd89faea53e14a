"""What every fused op does with its arguments before the extension sees them: ValueErrors that name
the op, the argument and what was expected, raised when the graph is built (never inside a kernel),
and the one dtype rule (compute in float32, or float64 when any input is float64; CPU only)."""

from __future__ import annotations

import mlx.core as mx

FLOATS = (mx.float16, mx.bfloat16, mx.float32, mx.float64)


def describe(a) -> str:
    return f"shape {tuple(a.shape)} and dtype {a.dtype}"


class Checks:
    """Argument checks of one op; every message starts with the op's name (e.g. "selective_scan")."""

    def __init__(self, op: str):
        self.op = op

    def fail(self, message: str):
        raise ValueError(f"{self.op}: {message}")

    def array(self, name: str, a, ndim: int, what: str) -> None:
        """`a` is a floating-point mx.array of rank `ndim`; `what` names its axes, e.g. "(batch, time)"."""
        if not isinstance(a, mx.array):
            self.fail(f"{name} must be an mx.array {what}, got {type(a).__name__}")
        if a.dtype not in FLOATS:
            self.fail(f"{name} must be a floating-point array (float16, bfloat16, float32 or float64), "
                      f"got {describe(a)}")
        if a.ndim != ndim:
            self.fail(f"{name} must have shape {what}, got {describe(a)}")

    def shape(self, name: str, a, want, what: str) -> None:
        if tuple(a.shape) != tuple(want):
            self.fail(f"{name} must have shape {what} = {tuple(want)}, got {describe(a)}")

    def optional(self, name: str, a, want, what: str) -> None:
        """An optional argument: when given, a floating-point array of shape `want`."""
        if a is not None:
            self.array(name, a, len(want), what)
            self.shape(name, a, want, what)

    def nonempty(self, name: str, a, axes: str) -> None:
        """`axes` (e.g. "batch, time and channels") of `a` are all >= 1."""
        if min(a.shape) < 1:
            self.fail(f"{name} needs {axes} >= 1, got {describe(a)}")

    def channels_last(self, x, min_rank: int) -> int:
        """The normalisations' x: (..., channels), at least `min_rank`-D, at least one channel;
        returns the channel count. Any rank >= min_rank is right; a lower one is named as failing
        the minimum."""
        what = f"(..., channels) with at least {min_rank} dimension{'' if min_rank == 1 else 's'}"
        self.array("x", x, max(getattr(x, "ndim", min_rank), min_rank), what)
        if x.shape[-1] < 1:
            self.fail(f"x must have shape (..., channels) with at least one channel, got {describe(x)}")
        return x.shape[-1]

    def per_channel(self, name: str, a, channels: int) -> None:
        """A per-channel parameter: a floating-point (channels,) array."""
        self.array(name, a, 1, "(channels,)")
        self.shape(name, a, (channels,), f"(channels,) with x's channels ({channels})")

    def positive(self, name: str, value) -> None:
        """A finite number > 0 (an eps); bools and strings are refused."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            self.fail(f"{name} must be a finite number > 0, got {value!r}")

    def at_most(self, name: str, a, count: int, limit: int, what: str) -> None:
        """1 <= count <= limit, e.g. the scan's states or the conv's taps (limits the kernels have)."""
        if not 1 <= count <= limit:
            self.fail(f"{name} must have 1 to {limit} {what}, got {describe(a)}")


def compute_dtype(*arrays):
    """float64 when any given array is float64 (the CPU kernels' double instantiation), else float32
    (half types widen: the kernels compute in float32)."""
    return mx.float64 if any(a is not None and a.dtype == mx.float64 for a in arrays) else mx.float32


def cast(dtype, *arrays):
    """The arrays in `dtype`, None staying None."""
    return tuple(None if a is None else a.astype(dtype) for a in arrays)
