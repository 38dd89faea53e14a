"""PNG of the training curves from the metrics log (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfnet4.atomic_io import atomic_path  # noqa: E402


def plot_curves(records: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    extra = [k for k in ("pesq", "stoi") if any(k in r for r in valid)]
    ncols = 2 + len(extra)
    fig, axes = plt.subplots(1, ncols, figsize=(4.5 * ncols, 3.6))
    ax = axes[0]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, label="train")
    if valid:
        ax.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="valid")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if train and min(r["loss"] for r in train) > 0:
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    for ax, key, label in zip(axes[1:], ["si_sdr", *extra], ["SI-SDR (dB)", *[e.upper() for e in extra]]):
        pts = [(r["step"], r[key]) for r in valid if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", label="enhanced")
        if key == "si_sdr":
            base = [(r["step"], r["si_sdr_noisy"]) for r in valid if r.get("si_sdr_noisy") is not None]
            if base:
                ax.plot(*zip(*base), "--", color="gray", label="noisy input")
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
