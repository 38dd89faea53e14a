"""Markdown and JSON renderings of a backbone or scaling result (the dicts built by
backbones.run_backbones / scaling.run_scaling)."""

from __future__ import annotations

import json
from pathlib import Path

from dfnet4.bench.machine import summary_lines
from dfnet4.bench.suite import MEASURE_NOTES, MEASURES


def num(x: float) -> str:
    """Readable at every magnitude: 3307, 57.3, 0.412."""
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}"


def ms_cell(cell: dict | None) -> str:
    """A table cell: median [q1–q3] ms, 'not run' or the error's type."""
    if cell is None:
        return "not run"
    if "error" in cell:
        return f"error: {cell['error'].split(':')[0]}"
    return f"{num(cell['median_ms'])} [{num(cell['q1_ms'])}–{num(cell['q3_ms'])}]"


def _mib(cell: dict | None) -> str:
    if cell is None:
        return "not run"
    if "error" in cell:
        return f"error: {cell['error'].split(':')[0]}"
    return num(cell["peak_mib"])


def _options(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _errors(rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        for key, cell in row.get("results", {}).items():
            if cell and "error" in cell:
                out.append(f"- {row['name']} / {MEASURES[key]}: {cell['error']}")
    return out


def _user_setting(result: dict) -> list[str]:
    """The user's table's columns, rebuilt from our uncompiled model-level measurements."""
    rows = []
    for row in result["implementations"]:
        fwd = row["results"].get("model_forward")
        fb = row["results"].get("model_fwd_bwd")
        step = row["results"].get("train_step")
        if not fwd or not fb or "error" in fwd or "error" in fb:
            continue
        f, b = fwd["median_ms"], fb["median_ms"]
        s = num(step["median_ms"]) if step and "error" not in step else "not run"
        rows.append([row["name"], num(f), num(b), num(f + b), num(b), s])
    if not rows:
        return []
    header = ["implementation", "Forward", '"Backward" (= forward+backward)',
              '"Total" as the user added it (forward counted twice)', "honest step without optimizer",
              "train step (fwd+bwd+AdamW, compiled)"]
    return [
        "## The user's table, rebuilt (model level, ms, medians)",
        "",
        "The user's document measured Forward and a \"Backward\" that was really forward+backward, and",
        "added them, so its Total counts the forward twice; it also timed an uncompiled step without the",
        "optimizer update. The honest cost of such a step is the forward+backward column alone.",
        "",
        *_table(header, rows),
        "",
    ]


def backbones_markdown(result: dict) -> str:
    s = result["settings"]
    measures = [m for m in MEASURES if m in s["measures"]]
    rows = result["implementations"]
    lines = [
        "# Backbone benchmark",
        "",
        f"batch {s['batch']}, {s['frames']} frames, backbone size {s['hidden']} "
        f"(input = hidden = output); {s['repeats']} timed repeats after {s['warmup']} warm-up runs.",
        "Times: median [interquartile range] in ms per call. Memory: MLX allocator peak in MiB during the",
        "call, including the parameters, inputs and optimizer state that are live during it.",
        "",
        *summary_lines(result["machine"]),
        f"- Loss (model-level measurements): {result.get('loss') or 'n/a (no model measured)'}",
        "",
        "## Time (ms)",
        "",
        *_table(["implementation"] + [MEASURES[m] for m in measures],
                [[r["name"]] + [ms_cell(r["results"].get(m)) for m in measures] for r in rows]),
        "",
        "## Peak memory (MiB)",
        "",
        *_table(["implementation"] + [MEASURES[m] for m in measures],
                [[r["name"]] + [_mib(r["results"].get(m)) for m in measures] for r in rows]),
        "",
        "## Target ratios (same run, same machine)",
        "",
    ]
    ratio_rows = []
    for r in result["ratios"]:
        if r["value"] is None:
            ratio_rows.append([r["title"], r.get("missing", "n/a"), f"{r['op']} {r['target']:g}", "n/a"])
        else:
            ratio_rows.append([r["title"], f"{r['value']:.2f}", f"{r['op']} {r['target']:g}",
                               "yes" if r["met"] else "NO"])
    lines += _table(["ratio", "value", "target", "met"], ratio_rows) + [""]
    lines += _user_setting(result)
    lines += ["## Implementations and exact configurations", ""]
    for r in rows:
        info = r.get("info", {})
        params = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in info.items() if k.endswith("parameters"))
        lines.append(f"- **{r['name']}** — {r['label']}. Backbone: {_options(r['backbone_config'])}."
                     f" Model: DfNet4Config({_options(r['model_options'])})." + (f" ({params})" if params else ""))
    lines += ["", "## What the columns measure", ""]
    lines += [f"- **{MEASURES[m]}**: {MEASURE_NOTES[m]}." for m in measures]
    errors = _errors(rows)
    if errors:
        lines += ["", "## Failures", "", *errors]
    return "\n".join(lines) + "\n"


def _fmt_exp(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _point(p: dict, key: str) -> str:
    if key in p:
        return num(p[key])
    if "skipped" in p:
        return "skipped"
    return f"error: {p.get('error', '?').split(':')[0]}"


def scaling_markdown(result: dict) -> str:
    s = result["settings"]
    frames = result["frames"]
    rows = result["implementations"]
    ref = result["reference_max_frames"]
    ref_text = f"reference implementations up to {ref} frames" if ref > 0 else "reference implementations left out"
    lines = [
        f"# Scaling: {result['measure_label']} versus sequence length",
        "",
        f"batch {s['batch']}, backbone size {s['hidden']}; {s['repeats']} timed repeats after "
        f"{s['warmup']} warm-up runs; {ref_text}; "
        f"longer lengths are skipped once a step is predicted (from the last two points) to exceed "
        f"{result['step_limit_s']:g} s or {result['memory_limit_mib'] / 1024:.1f} GiB peak.",
        "Exponent: least-squares slope of log(value) vs log(frames), over all measured points and over the",
        "largest three (1 = linear, 2 = quadratic).",
        "",
        *summary_lines(result["machine"]),
        "",
        "## Time per step (ms, median)",
        "",
        *_table(["implementation"] + [str(f) for f in frames] + ["exponent (all)", "exponent (largest 3)"],
                [[r["name"]] + [_point(p, "median_ms") for p in r["points"]]
                 + [_fmt_exp(r["time_exponent"]["all"]), _fmt_exp(r["time_exponent"]["largest_3"])]
                 for r in rows]),
        "",
        "## Peak memory (MiB)",
        "",
        *_table(["implementation"] + [str(f) for f in frames] + ["exponent (all)", "exponent (largest 3)"],
                [[r["name"]] + [_point(p, "peak_mib") for p in r["points"]]
                 + [_fmt_exp(r["memory_exponent"]["all"]), _fmt_exp(r["memory_exponent"]["largest_3"])]
                 for r in rows]),
        "",
    ]
    notes = [f"- {r['name']} at {p['frames']}: {p.get('skipped') or p.get('error')}"
             for r in rows for p in r["points"] if "median_ms" not in p]
    if notes:
        lines += ["## Skipped or failed points", "", *notes, ""]
    return "\n".join(lines)


def exponent_lines(result: dict) -> list[str]:
    return [
        f"{r['name']:18s} time exponent {_fmt_exp(r['time_exponent']['all'])} "
        f"(largest 3: {_fmt_exp(r['time_exponent']['largest_3'])}), "
        f"memory exponent {_fmt_exp(r['memory_exponent']['all'])} "
        f"(largest 3: {_fmt_exp(r['memory_exponent']['largest_3'])})"
        for r in result["implementations"]
    ]


def ratio_lines(result: dict) -> list[str]:
    out = []
    for r in result["ratios"]:
        if r["value"] is None:
            out.append(f"{r['title']}: n/a ({r.get('missing')}); target {r['op']} {r['target']:g}")
        else:
            out.append(f"{r['title']}: {r['value']:.2f} (target {r['op']} {r['target']:g}: "
                       f"{'met' if r['met'] else 'NOT met'})")
    return out


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
