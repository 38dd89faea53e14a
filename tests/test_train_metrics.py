"""Validation metrics and the metrics log."""

from __future__ import annotations

import numpy as np
import pytest

from dfnet4.data import synth
from dfnet4.train.metrics import MetricsLog, optional_metrics, score_clips, si_sdr


def test_si_sdr_known_values():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(48000)
    ref -= ref.mean()  # SI-SDR works on zero-mean signals
    noise = rng.standard_normal(48000)
    noise -= noise.mean()
    noise -= noise @ ref / (ref @ ref) * ref  # orthogonal to the reference
    noise *= np.linalg.norm(ref) / np.linalg.norm(noise) * 10 ** (-10 / 20)
    assert si_sdr(3.0 * ref + noise, ref) == pytest.approx(10 + 20 * np.log10(3), abs=1e-6)  # scale-invariant
    assert si_sdr(np.stack([ref, ref + noise]), ref).shape == (2,)


def test_pesq_and_stoi_when_installed():
    pytest.importorskip("pesq", reason="PESQ needs the metrics extra")
    pytest.importorskip("pystoi", reason="STOI needs the metrics extra")
    rng = np.random.default_rng(1)
    clean = synth.speech(rng, 3.0)
    noisy = clean + 3 * np.sqrt(np.mean(clean**2)) * rng.standard_normal(clean.size).astype(np.float32)
    good = score_clips(clean[None], clean[None], 48000, max_clips=1)
    bad = score_clips(noisy[None], clean[None], 48000, max_clips=1)
    assert set(good) == {"pesq", "stoi"} == set(optional_metrics())
    assert good["pesq"] > 4.0 and good["stoi"] > 0.99
    assert bad["pesq"] < good["pesq"] - 1 and bad["stoi"] < good["stoi"] - 0.1


def test_metrics_log_skips_cut_lines_and_rolls_back(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in range(1, 5):
        log.write(kind="train", step=step, loss=float(step), bad=float("nan"))
    with open(log.path, "a") as f:
        f.write('{"kind": "train", "st')  # a line cut by a kill
    rows = log.read()
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[0]["bad"] is None
    log.truncate_after(2)
    assert [r["step"] for r in log.read()] == [1, 2]
    MetricsLog(tmp_path / "off.jsonl", enabled=False).write(kind="train", step=1)
    assert not (tmp_path / "off.jsonl").exists()  # ranks other than 0 write nothing
