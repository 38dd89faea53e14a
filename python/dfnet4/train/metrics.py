"""Validation metrics (SI-SDR always; PESQ and STOI when their packages are importable) and the
JSON-lines metrics log."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from dfnet4.atomic_io import DiskFullError, free_bytes, is_disk_full, write_text_atomic


def si_sdr(estimate: np.ndarray, reference: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Scale-invariant SDR in dB along the last axis (zero-mean signals)."""
    est = np.asarray(estimate, np.float64)
    ref = np.asarray(reference, np.float64)
    est = est - est.mean(-1, keepdims=True)
    ref = ref - ref.mean(-1, keepdims=True)
    alpha = np.sum(est * ref, -1, keepdims=True) / (np.sum(ref * ref, -1, keepdims=True) + eps)
    target = alpha * ref
    noise = est - target
    return 10 * np.log10((np.sum(target**2, -1) + eps) / (np.sum(noise**2, -1) + eps))


def optional_metrics() -> dict:
    """{name: fn(estimate, reference, sample_rate) -> float} for the metric packages that import."""
    out = {}
    try:
        from pesq import pesq as _pesq

        from dfnet4.data.audio import resample

        def pesq_wb(est, ref, sr):  # P.862.2 wide-band runs at 16 kHz only
            return float(_pesq(16000, resample(ref, sr, 16000), resample(est, sr, 16000), "wb"))

        out["pesq"] = pesq_wb
    except ImportError:
        pass
    try:
        from pystoi import stoi as _stoi

        out["stoi"] = lambda est, ref, sr: float(_stoi(ref, est, sr, extended=False))
    except ImportError:
        pass
    return out


def silent(reference: np.ndarray, floor_db: float = -80.0) -> bool:
    """True when `reference` is too quiet to score against (peak below `floor_db` dBFS): SI-SDR,
    PESQ and STOI are all undefined or meaningless for a silent reference."""
    peak = float(np.max(np.abs(reference))) if np.size(reference) else 0.0
    return peak <= 10 ** (floor_db / 20)


def score_pair(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> tuple[dict, dict]:
    """Every metric of one clip: ({name: value}, {name: why it could not be computed}).

    SI-SDR always, PESQ-WB and STOI when their packages import. A failure of one metric (e.g.
    PESQ's "no utterance detected") is returned with its reason instead of being dropped.
    """
    if silent(reference):
        why = "the clean reference is silent (peak below -80 dBFS): nothing to score against"
        return {}, {name: why for name in ("si_sdr", *optional_metrics())}
    values, errors = {"si_sdr": float(si_sdr(estimate, reference))}, {}
    for name, fn in optional_metrics().items():
        try:
            values[name] = fn(estimate, reference, sample_rate)
        except Exception as exc:  # noqa: BLE001  (any metric failure is reported, not fatal)
            errors[name] = f"{type(exc).__name__}: {exc}"
    return values, errors


def score_clips(estimates: np.ndarray, references: np.ndarray, sample_rate: int, max_clips: int) -> dict:
    """Mean of every optional metric over the first `max_clips` clips (failures are skipped, counted)."""
    result = {}
    if max_clips <= 0:  # nothing to score: do not even import the metric packages (pystoi imports scipy.signal)
        return result
    for name, fn in optional_metrics().items():
        values = []
        for est, ref in list(zip(estimates, references))[:max_clips]:
            try:
                values.append(fn(est, ref, sample_rate))
            except Exception:  # e.g. PESQ's "no utterance detected" on a silent clip
                continue
        if values:
            result[name] = float(np.mean(values))
    return result


class MetricsLog:
    """Append-only JSON lines: one object per event ({"kind": "train"|"valid"|..., "step": ...})."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, **record) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        line = json.dumps(clean) + "\n"
        try:
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
        except OSError as exc:  # a cut line is skipped by read(); the run stops with a clear message
            if is_disk_full(exc):
                raise DiskFullError(self.path, len(line), free_bytes(self.path.parent)) from exc
            raise

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
        return rows

    def truncate_after(self, step: int) -> None:
        """On resume: drop records written after the checkpoint (they will be recomputed)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [r for r in self.read() if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep))
