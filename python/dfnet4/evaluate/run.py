"""Run systems over pairs and score every output: per file, per group and overall, with CPU time."""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from dfnet4.data.audio import SAMPLE_RATE
from dfnet4.evaluate import dnsmos
from dfnet4.evaluate.align import DEFAULT_MAX_LAG_SECONDS, AlignmentError
from dfnet4.evaluate.pairs import Pair, PairError
from dfnet4.evaluate.systems import System
from dfnet4.train.metrics import optional_metrics, score_pair

# higher is better for every metric here; the order of the report's columns
METRIC_ORDER = ("pesq", "stoi", "si_sdr", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")


def metric_names(use_dnsmos: bool) -> list[str]:
    names = {"si_sdr", *optional_metrics()} | (set(dnsmos.KEYS.values()) if use_dnsmos else set())
    return [m for m in METRIC_ORDER if m in names]


def _score(out: np.ndarray, clean: np.ndarray, use_dnsmos: bool) -> tuple[dict, dict]:
    values, errors = score_pair(out, clean, SAMPLE_RATE)
    if use_dnsmos:
        try:
            values.update(dnsmos.score(out, SAMPLE_RATE))
        except Exception as exc:  # noqa: BLE001
            errors.update({k: f"{type(exc).__name__}: {exc}" for k in dnsmos.KEYS.values()})
    return values, errors


def _means(rows: list[dict], systems: list[str], metrics: list[str]) -> dict:
    out = {}
    for s in systems:
        out[s] = {}
        for m in metrics:
            vals = [r["scores"][s][m] for r in rows if m in r.get("scores", {}).get(s, {})]
            out[s][m] = {"mean": float(np.mean(vals)) if vals else None, "n": len(vals)}
    return out


def evaluate(pairs: list[Pair], systems: list[System], max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS,
             use_dnsmos: bool | None = None, progress: bool = True) -> dict:
    """The whole evaluation as one JSON-able dict (see report.py for how it is shown).

    use_dnsmos=None: DNSMOS when speechmos is usable. A failure of one system on one file is
    recorded in that file's row and does not stop the run.
    """
    if use_dnsmos is None:
        use_dnsmos = dnsmos.unavailable_reason() is None
    elif use_dnsmos and (why := dnsmos.unavailable_reason()):
        raise RuntimeError(f"--dnsmos: {why}")
    metrics = metric_names(use_dnsmos)
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"systems: every system needs its own name, got {names}")
    timing = {s.name: {"cpu_seconds": 0.0, "wall_seconds": 0.0, "audio_seconds": 0.0} for s in systems}
    rows = []
    bar = tqdm(total=len(pairs) * len(systems), desc="evaluate", unit="run", disable=not progress,
               dynamic_ncols=True)
    for pair in pairs:
        row = {"name": pair.name, "group": pair.group, "sources": pair.sources}
        rows.append(row)
        try:
            al, noisy, clean = pair.load_aligned(max_lag_seconds)
            row.update(lag_samples=al.lag, correlation=al.correlation, seconds=al.length / SAMPLE_RATE)
        except (PairError, AlignmentError) as exc:
            row["error"] = str(exc)
            bar.update(len(systems))
            continue
        clean = al.apply(clean, "clean")
        row["scores"], row["errors"] = {}, {}
        for system in systems:
            bar.set_postfix_str(f"{system.name}: {pair.name}"[-60:])
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                out = np.asarray(system.enhance(noisy), np.float32)
                if out.shape != noisy.shape:
                    raise ValueError(f"output has shape {out.shape}, the input {noisy.shape}")
            except Exception as exc:  # noqa: BLE001  (one failing file must not end the evaluation)
                row["errors"][system.name] = {"enhance": f"{type(exc).__name__}: {exc}"}
                bar.update(1)
                continue
            t = timing[system.name]
            t["cpu_seconds"] += time.process_time() - c0
            t["wall_seconds"] += time.perf_counter() - w0
            t["audio_seconds"] += noisy.size / SAMPLE_RATE
            values, errors = _score(al.apply(out, "noisy"), clean, use_dnsmos)
            row["scores"][system.name] = values
            if errors:
                row["errors"][system.name] = errors
            bar.update(1)
        if not row["errors"]:
            del row["errors"]
    bar.close()
    scored = [r for r in rows if "scores" in r]
    groups = sorted({r["group"] for r in scored if r["group"]}, key=_group_key)
    return {
        "metrics": metrics,
        "dnsmos": "on" if use_dnsmos else (dnsmos.unavailable_reason() or "off"),
        "systems": [{"name": s.name, "description": s.description, **timing[s.name]} for s in systems],
        "files": rows,
        "counts": {"pairs": len(rows), "scored": len(scored), "failed": len(rows) - len(scored),
                   "aligned_with_lag": sum(1 for r in scored if r.get("lag_samples"))},
        "overall": _means(scored, names, metrics),
        "groups": {g: _means([r for r in scored if r["group"] == g], names, metrics) for g in groups},
    }


def _group_key(group: str):
    """Groups like "snr 5 dB" sort by their number, others by name."""
    parts = group.split()
    try:
        return (0, float(parts[1]), group)
    except (IndexError, ValueError):
        return (1, 0.0, group)


def failures(result: dict) -> list[str]:
    """One line per file or system/file that could not be scored, for the CLI's error summary."""
    out = []
    for r in result["files"]:
        if "error" in r:
            out.append(f"{r['name']}: {r['error']}")
        for system, errs in r.get("errors", {}).items():
            out.extend(f"{r['name']} [{system}] {metric}: {why}" for metric, why in errs.items())
    return out
