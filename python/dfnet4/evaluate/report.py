"""The evaluation's outputs: a markdown table, the full JSON and a PNG chart, written atomically and never
over existing files unless asked to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dfnet4.atomic_io import atomic_path, write_bytes_atomic  # noqa: E402

LABELS = {"pesq": "PESQ-WB", "stoi": "STOI", "si_sdr": "SI-SDR (dB)", "dnsmos_ovrl": "DNSMOS OVRL",
          "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK"}
EXTENSIONS = ("md", "json", "png")


def file_names(stem: str = "report") -> dict[str, str]:
    """{extension: file name} of the report written under `stem`."""
    return {ext: f"{stem}.{ext}" for ext in EXTENSIONS}


def _cell(v: dict | None, metric: str) -> str:
    if not v or v.get("mean") is None:
        return "–"
    return f"{v['mean']:.2f}" if metric == "si_sdr" else f"{v['mean']:.3f}"


def _table(means: dict, systems: list[dict], metrics: list[str], timing: bool) -> list[str]:
    head = ["system", *(LABELS[m] for m in metrics), "files"]
    trained = timing and any(s.get("training") for s in systems)
    if timing:
        head += ["enhance CPU s", "enhance wall s", "CPU s per audio s"]
    if trained:
        head += ["training steps", "training CPU min", "training wall min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in systems:
        row = means[s["name"]]
        n = max((row[m]["n"] for m in metrics), default=0)
        cells = [s["name"], *(_cell(row[m], m) for m in metrics), str(n)]
        if timing:
            rtf = s["cpu_seconds"] / s["audio_seconds"] if s["audio_seconds"] else float("nan")
            cells += [f"{s['cpu_seconds']:.1f}", f"{s['wall_seconds']:.1f}", f"{rtf:.3f}"]
        if trained:
            t = s.get("training")
            cells += [str(t["steps"]), f"{t['cpu_seconds'] / 60:.1f}", f"{t['wall_seconds'] / 60:.1f}"] if t else ["–"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict, title: str = "dfnet4-eval") -> str:
    metrics, systems = result["metrics"], result["systems"]
    c = result["counts"]
    out = [f"# {title}", "",
           f"{c['scored']} of {c['pairs']} pairs scored ({c['failed']} failed, {c['aligned_with_lag']} aligned "
           f"with a lag); metrics at 48 kHz, PESQ-WB at 16 kHz; DNSMOS: {result['dnsmos']}.", "",
           "## Overall (mean over files)", "", *_table(result["overall"], systems, metrics, timing=True), ""]
    for group, means in result["groups"].items():
        out += [f"## {group}", "", *_table(means, systems, metrics, timing=False), ""]
    out += ["## Per file", ""]
    head = ["file", "group", "lag (ms)", *(f"{s['name']} {LABELS[m]}" for s in systems for m in metrics[:3])]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["files"]:
        if "error" in r:
            out.append("| " + " | ".join([r["name"], r["group"], f"**not scored**: {r['error']}"]
                                         + [""] * (len(head) - 3)) + " |")
            continue
        cells = [r["name"], r["group"], f"{1000 * r['lag_samples'] / 48000:.1f}"]
        for s in systems:
            sc = r["scores"].get(s["name"], {})
            for m in metrics[:3]:
                cells.append(f"{sc[m]:.2f}" if m in sc else "err")
        out.append("| " + " | ".join(cells) + " |")
    errors = [(r["name"], s, e) for r in result["files"] for s, e in r.get("errors", {}).items()]
    if errors:
        out += ["", "## Errors", ""] + [f"- {n} [{s}]: " + "; ".join(f"{k}: {v}" for k, v in e.items())
                                         for n, s, e in errors]
    return "\n".join(out) + "\n"


def chart(result: dict, path: Path, title: str = "dfnet4-eval", overwrite: bool = True) -> None:
    metrics, systems = result["metrics"], [s["name"] for s in result["systems"]]
    groups = list(result["groups"]) or []
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        if groups:  # one line per system across the groups (e.g. SNRs)
            for s in systems:
                ys = [result["groups"][g][s][m]["mean"] for g in groups]
                ax.plot(range(len(groups)), [np.nan if y is None else y for y in ys], "o-", label=s)
            ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        else:
            ys = [result["overall"][s][m]["mean"] for s in systems]
            ax.bar(range(len(systems)), [np.nan if y is None else y for y in ys], color=[f"C{i}" for i in range(len(systems))])
            ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right")
        ax.set_title(LABELS[m])
        ax.grid(alpha=0.3)
    if groups:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=path.suffix, overwrite=overwrite) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def check_writable(out_dir: Path, overwrite: bool, stem: str = "report") -> None:
    """Refuse (ValueError) to replace existing outputs unless `overwrite`."""
    existing = [n for n in file_names(stem).values() if (out_dir / n).exists()]
    if existing and not overwrite:
        raise ValueError(f"--out: {str(out_dir)!r} already holds {existing}; pass --overwrite to replace them")


def write(result: dict, out_dir: str | os.PathLike, overwrite: bool = False, title: str = "dfnet4-eval",
          stem: str = "report") -> dict[str, Path]:
    out = Path(out_dir)
    check_writable(out, overwrite, stem)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / n for ext, n in file_names(stem).items()}
    # without overwrite, a report that appears meanwhile is not replaced either (atomic_io.publish)
    write_bytes_atomic(paths["json"], (json.dumps(result, indent=1) + "\n").encode(), overwrite=overwrite)
    write_bytes_atomic(paths["md"], markdown(result, title).encode(), overwrite=overwrite)
    chart(result, paths["png"], title, overwrite=overwrite)
    return paths
