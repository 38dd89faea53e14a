"""Time per step and peak memory versus sequence length, with the fitted exponent per backbone.

A recurrent backbone (mamba, gru) should grow linearly in the number of frames (exponent ~1),
causal attention with an unbounded window quadratically (~2) once the T^2 part dominates.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Callable

import numpy as np

from dfnet4.bench import machine
from dfnet4.bench.runner import Runner, Settings, make_backbone, make_model
from dfnet4.bench.suite import MEASURES, Impl
from dfnet4.model.config import merge_model_tables

DEFAULT_FRAMES = (125, 250, 500, 1000, 2000, 4000)


def fit_exponent(frames: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(frames); None with fewer than 2 points."""
    pts = [(f, v) for f, v in zip(frames, values) if v is not None and v > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    slope, _ = np.polyfit(x, y, 1)
    return float(slope)


def exponents(points: list[dict], key: str) -> dict:
    """Slope over all measured points and over the largest three (the asymptotic regime)."""
    ok = [p for p in points if key in p]
    frames = [p["frames"] for p in ok]
    values = [p[key] for p in ok]
    return {"all": fit_exponent(frames, values), "largest_3": fit_exponent(frames[-3:], values[-3:])}


def physical_memory_mib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


def predict_next(points: list[dict], key: str, frames: int, lo: float, hi: float) -> float | None:
    """Extrapolate `key` to `frames` from the last two measured points (slope clamped to [lo, hi];
    `hi` with a single point, to err on the safe side)."""
    measured = [p for p in points if key in p]
    if not measured:
        return None
    last = measured[-1]
    slope = hi
    if len(measured) >= 2:
        prev = measured[-2]
        slope = math.log(last[key] / prev[key]) / math.log(last["frames"] / prev["frames"])
        slope = min(max(slope, lo), hi)
    return last[key] * (frames / last["frames"]) ** slope


def run_scaling(
    impls: list[Impl],
    settings: Settings,
    *,
    frames_list: tuple[int, ...] | list[int] = DEFAULT_FRAMES,
    measure: str = "backbone_fwd_bwd",
    reference_max_frames: int = 1000,
    step_limit_s: float = 60.0,
    memory_limit_mib: float | None = None,
    backbone_factory=make_backbone,
    model_factory=make_model,
    log: Callable[[str], None] = print,
    on_update: Callable[[dict], None] | None = None,
    measure_blas: bool = True,
) -> dict:
    """Lengths are run in increasing order. A point is skipped (and so are the longer ones) when the
    implementation is a reference one beyond `reference_max_frames`, or when extrapolating the last
    two points predicts a step over `step_limit_s` or a peak over `memory_limit_mib` (default: 70%
    of physical memory; an out-of-memory kill would lose the whole run). `on_update(result)` is
    called after every point, so that a partial result can be saved."""
    if measure not in MEASURES:
        raise ValueError(f"run_scaling: measure must be one of {list(MEASURES)}, got {measure!r}")
    frames_list = sorted(frames_list)
    if not frames_list or any(not isinstance(f, int) or f < 1 for f in frames_list):
        raise ValueError(f"run_scaling: frames_list must be positive integers, got {frames_list!r}")
    if memory_limit_mib is None:
        total = physical_memory_mib()
        memory_limit_mib = 0.7 * total if total else float("inf")
    settings = replace(settings, measures=[measure])
    runner = Runner(settings, backbone_factory=backbone_factory, model_factory=model_factory, log=log)
    result = {
        "kind": "scaling",
        "complete": False,
        "measure": measure,
        "measure_label": MEASURES[measure],
        "frames": list(frames_list),
        "reference_max_frames": reference_max_frames,
        "step_limit_s": step_limit_s,
        "memory_limit_mib": memory_limit_mib,
        "settings": settings.to_dict(),
        "machine": machine.describe(measure_blas=measure_blas),
        "loss": None,
        "implementations": [],
    }
    for impl in impls:
        log(f"{impl.name}: {impl.label}")
        points: list[dict] = []
        row = {
            "name": impl.name,
            "backbone": impl.backbone,
            "label": impl.label,
            "reference": impl.reference,
            "backbone_config": {"input_size": settings.hidden, "hidden_size": settings.hidden,
                                "output_size": settings.hidden, **impl.backbone_options},
            "model_options": merge_model_tables(settings.model_config, impl.model_options),
            "points": points,
        }
        _fit(row)
        result["implementations"].append(row)
        stop_reason = None
        for frames in frames_list:
            if stop_reason is None:
                stop_reason = _reason_to_stop(impl, points, frames, reference_max_frames, step_limit_s,
                                              memory_limit_mib)
            if stop_reason is not None:
                points.append({"frames": frames, "skipped": stop_reason})
                log(f"  {impl.name:18s} T={frames:<5d} skipped: {stop_reason}")
                continue
            results, _ = runner.run_impl(impl, [measure], frames)
            cell = results[measure]
            if "error" in cell:
                points.append({"frames": frames, "error": cell["error"]})
                stop_reason = "an earlier length failed"
            else:
                points.append({"frames": frames, **{k: cell[k] for k in (
                    "median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "peak_mib", "baseline_mib")}})
            _fit(row)
            result["loss"] = runner.loss_name
            if on_update is not None:
                on_update(result)
    result["complete"] = True
    return result


def _reason_to_stop(impl: Impl, points: list[dict], frames: int, reference_max_frames: int,
                    step_limit_s: float, memory_limit_mib: float) -> str | None:
    if impl.reference and frames > reference_max_frames:
        return f"reference implementation limited to {reference_max_frames} frames"
    t = predict_next(points, "median_ms", frames, 1.0, 3.0)
    if t is not None and t > step_limit_s * 1e3:
        return f"predicted step {t / 1e3:.0f} s > limit {step_limit_s:g} s"
    m = predict_next(points, "peak_mib", frames, 1.0, 2.0)
    if m is not None and m > memory_limit_mib:
        return f"predicted peak {m / 1024:.1f} GiB > limit {memory_limit_mib / 1024:.1f} GiB"
    return None


def _fit(row: dict) -> None:
    measured = [p for p in row["points"] if "median_ms" in p]
    row["time_exponent"] = exponents(measured, "median_ms")
    row["memory_exponent"] = exponents(measured, "peak_mib")
