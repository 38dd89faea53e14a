"""Time per step and peak memory versus sequence length, with the fitted exponent per backbone.

A recurrent backbone (mamba, gru) should grow linearly in the number of frames (exponent ~1),
causal attention with an unbounded window quadratically (~2) once the T^2 part dominates.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from dfnet4.bench import machine
from dfnet4.bench.runner import Runner, Settings, make_backbone, make_model
from dfnet4.bench.suite import MEASURES, Impl

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


def run_scaling(
    impls: list[Impl],
    settings: Settings,
    *,
    frames_list: tuple[int, ...] | list[int] = DEFAULT_FRAMES,
    measure: str = "backbone_fwd_bwd",
    reference_max_frames: int = 1000,
    step_limit_s: float = 60.0,
    backbone_factory=make_backbone,
    model_factory=make_model,
    log: Callable[[str], None] = print,
    measure_blas: bool = True,
) -> dict:
    """Reference implementations stop after `reference_max_frames`; any implementation stops once
    one point's median step exceeds `step_limit_s` (the next, longer one would take longer still)."""
    if measure not in MEASURES:
        raise ValueError(f"run_scaling: measure must be one of {list(MEASURES)}, got {measure!r}")
    frames_list = sorted(frames_list)
    if not frames_list or any(not isinstance(f, int) or f < 1 for f in frames_list):
        raise ValueError(f"run_scaling: frames_list must be positive integers, got {frames_list!r}")
    record = machine.describe(measure_blas=measure_blas)
    settings = replace(settings, measures=[measure])
    runner = Runner(settings, backbone_factory=backbone_factory, model_factory=model_factory, log=log)
    rows = []
    for impl in impls:
        log(f"{impl.name}: {impl.label}")
        points = []
        stop_reason = None
        for frames in frames_list:
            if stop_reason is None and impl.reference and frames > reference_max_frames:
                stop_reason = f"reference implementation limited to {reference_max_frames} frames"
            if stop_reason is not None:
                points.append({"frames": frames, "skipped": stop_reason})
                continue
            results, _ = runner.run_impl(impl, [measure], frames)
            cell = results[measure]
            if "error" in cell:
                points.append({"frames": frames, "error": cell["error"]})
                stop_reason = "an earlier length failed"
                continue
            points.append(
                {
                    "frames": frames,
                    "median_ms": cell["median_ms"],
                    "q1_ms": cell["q1_ms"],
                    "q3_ms": cell["q3_ms"],
                    "min_ms": cell["min_ms"],
                    "max_ms": cell["max_ms"],
                    "peak_mib": cell["peak_mib"],
                    "baseline_mib": cell["baseline_mib"],
                }
            )
            if cell["median_ms"] > step_limit_s * 1e3:
                stop_reason = f"a step took {cell['median_ms'] / 1e3:.1f} s > limit {step_limit_s} s"
        measured = [p for p in points if "median_ms" in p]
        rows.append(
            {
                "name": impl.name,
                "backbone": impl.backbone,
                "label": impl.label,
                "reference": impl.reference,
                "backbone_config": {"input_size": settings.hidden, "hidden_size": settings.hidden,
                                    "output_size": settings.hidden, **impl.backbone_options},
                "model_options": {**settings.model_config, **impl.model_options},
                "points": points,
                "time_exponent": exponents(measured, "median_ms"),
                "memory_exponent": exponents(measured, "peak_mib"),
            }
        )
    return {
        "kind": "scaling",
        "measure": measure,
        "measure_label": MEASURES[measure],
        "frames": list(frames_list),
        "reference_max_frames": reference_max_frames,
        "step_limit_s": step_limit_s,
        "settings": settings.to_dict(),
        "machine": record,
        "loss": runner.loss_name,
        "implementations": rows,
    }


