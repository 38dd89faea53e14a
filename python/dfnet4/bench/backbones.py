"""The backbone table: every implementation x every measurement at one (batch, frames), plus the
issue's target ratios, all from one run on one machine."""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

from dfnet4.bench import machine
from dfnet4.bench.runner import Runner, Settings, make_backbone, make_model
from dfnet4.bench.suite import MEASURE_NOTES, MEASURES, TARGET_RATIOS, Impl, Ratio
from dfnet4.model.config import merge_model_tables


def stat(result: dict, impl: str, measure: str, key: str) -> float | None:
    for row in result["implementations"]:
        if row["name"] == impl:
            cell = row["results"].get(measure)
            if cell and "error" not in cell:
                return cell[key]
    return None


def compute_ratio(result: dict, ratio: Ratio) -> dict:
    num = stat(result, ratio.numerator, ratio.measure, ratio.stat)
    den = stat(result, ratio.denominator, ratio.measure, ratio.stat)
    out = {**asdict(ratio), "value": None, "met": None}
    if num is None or den is None or den == 0:
        missing = [n for n, v in ((ratio.numerator, num), (ratio.denominator, den)) if v is None]
        out["missing"] = f"not measured (or failed): {', '.join(missing) or 'zero denominator'}"
        return out
    value = num / den
    out["value"] = value
    out["met"] = value <= ratio.target if ratio.op == "<=" else value >= ratio.target
    return out


def run_backbones(
    impls: list[Impl],
    settings: Settings,
    *,
    backbone_factory=make_backbone,
    model_factory=make_model,
    log: Callable[[str], None] = print,
    on_update: Callable[[dict], None] | None = None,
    measure_blas: bool = True,
) -> dict:
    """`on_update(result)` is called after every implementation, so that a partial result can be saved."""
    runner = Runner(settings, backbone_factory=backbone_factory, model_factory=model_factory, log=log)
    rows: list[dict] = []
    result = {
        "kind": "backbones",
        "complete": False,
        "settings": settings.to_dict(),
        "machine": machine.describe(measure_blas=measure_blas),
        "loss": None,
        "measures": dict(MEASURES),
        "measure_notes": dict(MEASURE_NOTES),
        "implementations": rows,
        "ratios": [],
    }
    for impl in impls:
        log(f"{impl.name}: {impl.label}")
        results, info = runner.run_impl(impl, settings.measures, settings.frames)
        rows.append(
            {
                "name": impl.name,
                "backbone": impl.backbone,
                "label": impl.label,
                "backbone_config": {
                    "input_size": settings.hidden,
                    "hidden_size": settings.hidden,
                    "output_size": settings.hidden,
                    **impl.backbone_options,
                },
                "model_options": merge_model_tables(settings.model_config, impl.model_options),
                "info": info,
                "results": results,
            }
        )
        result["loss"] = runner.loss_name
        result["ratios"] = [compute_ratio(result, r) for r in TARGET_RATIOS]
        if on_update is not None:
            on_update(result)
    result["ratios"] = [compute_ratio(result, r) for r in TARGET_RATIOS]
    result["complete"] = True
    return result
