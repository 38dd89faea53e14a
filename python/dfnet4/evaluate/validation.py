"""A real validation set for dfnet4-train (`--valid-dir DIR`): DIR/noisy and DIR/clean paired by file
name, read, aligned and checked once, then scored in each validation pass with dfnet4-eval's metrics.

Every pair is loaded when the run starts (so a bad file stops the run before the first step, with
all bad pairs listed) and kept in memory as float32 at 48 kHz: keep the set to minutes of audio.
The noisy input's scores are computed once; each pass scores the model's output on every file
with every metric (SI-SDR, and PESQ-WB and STOI when their packages import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from dfnet4.data.audio import SAMPLE_RATE
from dfnet4.evaluate.align import DEFAULT_MAX_LAG_SECONDS, AlignmentError
from dfnet4.evaluate.pairs import PairError, pairs_from_dirs
from dfnet4.train.metrics import score_pair


def check_valid_dir(directory: str, label: str = "--valid-dir") -> list:
    """The pairs of DIR/noisy and DIR/clean (not yet read); ValueError naming `label` otherwise."""
    root = Path(directory)
    missing = [sub for sub in ("noisy", "clean") if not (root / sub).is_dir()]
    if missing:
        raise ValueError(f"{label}: {str(root)!r} needs the sub-folders noisy/ and clean/ (pairs matched by "
                         f"file name); missing: {', '.join(m + '/' for m in missing)}")
    try:
        return pairs_from_dirs(root / "noisy", root / "clean", flags=("noisy", "clean"))
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None


class PairedValidation:
    """The pairs of `directory`, aligned (dfnet4-eval's lag search) and ready to score."""

    def __init__(self, directory: str, label: str = "--valid-dir"):
        self.items: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, noisy, clean), aligned
        problems = []
        for pair in check_valid_dir(directory, label):
            try:
                al, noisy, clean = pair.load_aligned(DEFAULT_MAX_LAG_SECONDS)
            except (PairError, AlignmentError) as exc:
                problems.append(f"{pair.name}: {exc}")
                continue
            self.items.append((pair.name, al.apply(noisy, "noisy"), al.apply(clean, "clean")))
        if problems:
            raise ValueError(f"{label}: {len(problems)} pair(s) cannot be scored: " + "; ".join(problems))
        self.noisy_scores = {f"{k}_noisy": v for k, v in self._means(noisy for _, noisy, _ in self.items).items()}

    def _means(self, outputs) -> dict:
        sums: dict[str, list[float]] = {}
        for out, (_, _, clean) in zip(outputs, self.items):
            values, _errors = score_pair(out, clean, SAMPLE_RATE)  # a failing metric leaves that file out
            for k, v in values.items():
                sums.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in sums.items()}

    def score(self, forward: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]) -> dict:
        """forward(clean, noisy) -> (the run's loss, enhanced audio), each (samples,); -> the means of
        the loss and every metric over the files, beside the noisy input's (`*_noisy`)."""
        losses, outputs = [], []
        for _name, noisy, clean in self.items:
            loss, enhanced = forward(clean, noisy)
            losses.append(loss)
            outputs.append(enhanced)
        return {"loss": float(np.mean(losses)), **self._means(outputs), **self.noisy_scores,
                "valid_files": len(self.items)}
