"""Wall-clock time and peak memory of one lazily-evaluated MLX step, measured honestly.

MLX builds graphs lazily: nothing runs until `mx.eval`. So every timed call builds the graph AND
evaluates everything it returns, then synchronises the device, before the clock stops; inputs are
evaluated before the clock starts so their creation is never timed.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import mlx.core as mx

MiB = 1024 * 1024


@dataclass
class Measurement:
    """Times in milliseconds over `repeats` runs after `warmup` untimed runs; memory in MiB."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    peak_mib: float  # highest MLX memory in use during any timed run (includes live params/inputs)
    baseline_mib: float  # MLX memory in use just before the runs (params, inputs, optimizer state)
    samples_ms: list[float]
    # the process's CPU time per run (all its threads, time.process_time): on a machine shared with
    # other work, a single-threaded run's CPU time stays near its idle wall time when its wall time
    # does not (a run's threads that wait without spinning add nothing)
    cpu_median_ms: float = 0.0
    cpu_samples_ms: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def quartiles(samples: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3) by linear interpolation; with one sample all three are that sample."""
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[0], q[1], q[2]


def _settle() -> None:
    """Drop garbage and MLX's buffer cache so one workload's leftovers don't count for the next."""
    gc.collect()
    mx.synchronize()
    mx.clear_cache()


def measure(step: Callable[[], Any], *, warmup: int, repeats: int) -> Measurement:
    """Run `step` warmup + repeats times; `step()` returns the arrays (pytree) that must be computed."""
    if repeats < 1:
        raise ValueError(f"measure: repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"measure: warmup must be >= 0, got {warmup}")
    for _ in range(warmup):  # also triggers mx.compile tracing, kernel caches, allocator growth
        out = step()
        mx.eval(out)
        del out
    _settle()
    baseline = mx.get_active_memory()
    samples, peaks, cpu = [], [], []
    for _ in range(repeats):
        mx.synchronize()
        mx.reset_peak_memory()
        t0, c0 = time.perf_counter(), time.process_time()
        out = step()
        mx.eval(out)
        mx.synchronize()
        samples.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        peaks.append(mx.get_peak_memory())
        del out
    q1, med, q3 = quartiles(samples)
    return Measurement(
        median_ms=med,
        q1_ms=q1,
        q3_ms=q3,
        min_ms=min(samples),
        max_ms=max(samples),
        repeats=repeats,
        warmup=warmup,
        peak_mib=max(peaks) / MiB,
        baseline_mib=baseline / MiB,
        samples_ms=samples,
        cpu_median_ms=statistics.median(cpu),
        cpu_samples_ms=cpu,
    )
