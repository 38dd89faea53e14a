"""PNG charts of the results: grouped bars for the backbone table, log-log lines for scaling."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dfnet4.bench.suite import MEASURES  # noqa: E402


def _device_line(result: dict) -> str:
    m = result["machine"]
    return f"{m['cpu_model']} ({m['cpu_cores_usable']} cores), MLX {m['mlx_version']}, {m['device']}"


def backbones_chart(result: dict, path: Path) -> None:
    s = result["settings"]
    measures = [m for m in MEASURES if m in s["measures"]]
    rows = result["implementations"]
    fig, (ax_t, ax_m) = plt.subplots(2, 1, figsize=(max(8, 2.2 * len(measures) + 2), 9))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(measures))
    for i, row in enumerate(rows):
        med, lo, hi, mem = [], [], [], []
        for m in measures:
            cell = row["results"].get(m)
            ok = cell is not None and "error" not in cell
            med.append(cell["median_ms"] if ok else np.nan)
            lo.append(cell["median_ms"] - cell["q1_ms"] if ok else 0)
            hi.append(cell["q3_ms"] - cell["median_ms"] if ok else 0)
            mem.append(cell["peak_mib"] if ok else np.nan)
        offset = x - 0.4 + width * (i + 0.5)
        ax_t.bar(offset, med, width, yerr=[lo, hi], capsize=2, label=row["name"])
        ax_m.bar(offset, mem, width, label=row["name"])
    measured = any(
        c is not None and "error" not in c for row in rows for c in (row["results"].get(m) for m in measures)
    )
    for ax, ylabel in ((ax_t, "ms per call (median, IQR bars)"), (ax_m, "peak memory (MiB)")):
        ax.set_xticks(x, [MEASURES[m].replace(" (", "\n(") for m in measures], fontsize=8)
        if measured:  # log scale: the implementations differ by orders of magnitude
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "every measurement failed (see the .md)", transform=ax.transAxes, ha="center")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", which="both", alpha=0.3)
    ax_t.legend(fontsize=8, ncol=min(5, len(rows)))
    ax_t.set_title(f"Backbones: batch {s['batch']}, {s['frames']} frames (lower is better)\n{_device_line(result)}",
                   fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reference_slopes(ax, frames: list[int], anchor: float) -> None:
    f = np.array([min(frames), max(frames)], dtype=float)
    for slope, style in ((1, ":"), (2, "--")):
        ax.plot(f, anchor * (f / f[0]) ** slope, "k" + style, lw=1, alpha=0.6, label=f"slope {slope}")


def scaling_chart(result: dict, path: Path) -> None:
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5.5))
    anchors_t, anchors_m = [], []
    all_t, all_m = [], []
    for row in result["implementations"]:
        pts = [p for p in row["points"] if "median_ms" in p]
        if not pts:
            continue
        f = [p["frames"] for p in pts]
        exp = row["time_exponent"]["all"]
        ax_t.plot(f, [p["median_ms"] for p in pts], "o-",
                  label=f"{row['name']} (exp {exp:.2f})" if exp is not None else row["name"])
        ax_m.plot(f, [p["peak_mib"] for p in pts], "o-", label=row["name"])
        anchors_t.append(pts[0]["median_ms"])
        anchors_m.append(pts[0]["peak_mib"])
        all_t += [p["median_ms"] for p in pts]
        all_m += [p["peak_mib"] for p in pts]
    frames = result["frames"]
    if anchors_t:
        _reference_slopes(ax_t, frames, float(np.exp(np.mean(np.log(anchors_t)))))
        _reference_slopes(ax_m, frames, float(np.exp(np.mean(np.log(anchors_m)))))
        # keep the axes on the data; the reference lines are clipped, not the measurements
        ax_t.set_ylim(min(all_t) / 1.5, max(all_t) * 1.5)
        ax_m.set_ylim(min(all_m) / 1.5, max(all_m) * 1.5)
    for ax, ylabel in ((ax_t, f"{result['measure_label']}: ms (median)"), (ax_m, "peak memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(frames, [str(f) for f in frames])
        ax.minorticks_off()
        ax.set_xlabel("sequence length (frames)")
        ax.set_ylabel(ylabel)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8)
    s = result["settings"]
    fig.suptitle(f"Scaling, batch {s['batch']}: {_device_line(result)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
