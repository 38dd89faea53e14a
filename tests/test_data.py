"""Data pipeline: synthetic built-in set, prepare (shards, index, resume, corrupt files), mixer, loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from dfnet4.cli import prepare as prepare_cli
from dfnet4.data import AudioCache, BatchLoader, CacheError, MixConfig, Mixer, synth
from dfnet4.data.builtin import ensure_builtin
from dfnet4.data.loader import validation_set
from dfnet4.data.mixer import _power
from dfnet4.data.prepare import prepare

SR = 48000


def _band_energy(x, lo, hi, sr=SR):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


def test_synthetic_speech_is_speech_like_and_deterministic():
    a = synth.speech(np.random.default_rng(1), 3.0)
    b = synth.speech(np.random.default_rng(1), 3.0)
    assert a.dtype == np.float32 and a.shape == (3 * SR,)
    np.testing.assert_array_equal(a, b)
    rms_db = 10 * np.log10(np.mean(a.astype(np.float64) ** 2))
    assert -33 < rms_db < -21
    # speech-like: most energy below 4 kHz (voiced formants), some above (fricatives), and pauses
    assert _band_energy(a, 80, 4000) > 0.5
    assert _band_energy(a, 4000, 16000) > 1e-3
    frames = a[: a.size // 480 * 480].reshape(-1, 480)
    frame_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    assert np.sum(frame_db < rms_db - 20) >= 5, "expected near-silent pause frames"


@pytest.mark.parametrize("kind", synth.NOISE_KINDS)
def test_synthetic_noises(kind):
    x = synth.noise(np.random.default_rng(2), 1.0, kind)
    assert x.shape == (SR,) and np.all(np.isfinite(x))
    assert abs(10 * np.log10(np.mean(x.astype(np.float64) ** 2)) + 25) < 0.1


def _write(path, audio, sr):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr)


@pytest.fixture
def audio_dirs(tmp_path):
    rng = np.random.default_rng(0)
    speech, noise, rir = tmp_path / "speech", tmp_path / "noise", tmp_path / "rir"
    _write(speech / "a.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    _write(speech / "sub" / "b.flac", 0.1 * rng.standard_normal(44100).astype(np.float32), 44100)
    _write(speech / "c.wav", 0.1 * rng.standard_normal((9600, 2)).astype(np.float32), 48000)  # stereo
    (speech / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbage-that-is-not-audio")
    (speech / "notes.txt").write_text("not audio, ignored by extension")
    _write(noise / "n.wav", 0.05 * rng.standard_normal(24000).astype(np.float32), 24000)
    decay = np.exp(-np.arange(4800) / 800.0) * rng.standard_normal(4800)
    decay[0] = 1.0
    _write(rir / "r.wav", (0.5 * decay / np.abs(decay).max()).astype(np.float32), 48000)
    return speech, noise, rir


def test_prepare_resamples_shards_and_reports_corrupt_file(tmp_path, audio_dirs, capsys):
    speech, noise, rir = audio_dirs
    out = tmp_path / "cache"
    rc = prepare_cli.main(["--speech", str(speech), "--noise", str(noise), "--rir", str(rir), "--out", str(out),
                           "--files-per-shard", "2", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr()
    assert "broken.wav" in text.out + text.err  # reported, not silent
    cache = AudioCache(out)
    assert cache.num_clips("speech") == 3 and cache.num_clips("noise") == 1 and cache.num_clips("rir") == 1
    failed = cache.failed("speech")
    assert [f["source"] for f in failed] == ["broken.wav"] and failed[0]["error"]
    lengths = {cache.clip_info("speech", i)["source"]: cache.clip_info("speech", i)["length"] for i in range(3)}
    assert lengths == {"a.wav": 48000, "sub/b.flac": 48000, "c.wav": 9600}  # all at 48 kHz, mono
    assert len(cache.index["kinds"]["speech"]["shards"]) == 2  # 4 audio files, 2 per shard
    # the stereo clip is the mean of its channels
    c = cache.clip("speech", [i for i in range(3) if cache.clip_info("speech", i)["source"] == "c.wav"][0])
    ref, _ = sf.read(str(speech / "c.wav"), dtype="float32")
    np.testing.assert_allclose(c, ref.mean(1), atol=1e-7)


def test_prepare_resumes_and_rebuilds_damaged_shards(tmp_path, audio_dirs):
    speech, noise, _ = audio_dirs
    out = tmp_path / "cache"
    prepare(out, speech, noise, files_per_shard=2, progress=False)
    shard0 = out / "speech" / "shard-00000.npy"
    mtime = (out / "speech" / "shard-00001.npy").stat().st_mtime_ns
    with open(shard0, "r+b") as f:  # an interrupted write of shard 0
        f.truncate(100)
    index = prepare(out, speech, noise, files_per_shard=2, progress=False)
    assert index["kinds"]["speech"]["reused_shards"] == 1  # shard 1 kept, shard 0 rebuilt
    assert (out / "speech" / "shard-00001.npy").stat().st_mtime_ns == mtime
    assert AudioCache(out).clip("speech", 0).size == 48000


def test_prepare_bad_arguments(tmp_path, audio_dirs, capsys):
    speech, noise, _ = audio_dirs
    assert prepare_cli.main(["--speech", str(tmp_path / "nope"), "--noise", str(noise), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_cli.main(["--speech", str(speech), "--noise", str(empty), "--out", str(tmp_path / "c")]) == 2
    assert "--noise: no audio files" in capsys.readouterr().err
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.wav").write_bytes(b"nonsense")
    assert prepare_cli.main(["--speech", str(only_bad), "--noise", str(noise), "--out", str(tmp_path / "c2"),
                             "--no-progress"]) == 2
    assert "none of the 1 files could be read" in capsys.readouterr().err


def test_damaged_cache_is_a_clear_error(tmp_path, audio_dirs, capsys):
    speech, noise, _ = audio_dirs
    prepare(tmp_path / "c", speech, noise, files_per_shard=2, progress=False)
    with open(tmp_path / "c" / "speech" / "shard-00001.npy", "r+b") as f:
        f.truncate(64)
    with pytest.raises(CacheError, match="shard-00001.npy has 64 bytes.*re-run dfnet4-prepare"):
        AudioCache(tmp_path / "c")
    from dfnet4.cli.train import main

    assert main(["--cache-dir", str(tmp_path / "c"), "--steps", "1"]) == 2
    assert "re-run dfnet4-prepare" in capsys.readouterr().err
    prepare(tmp_path / "c", speech, noise, files_per_shard=2, progress=False)  # rebuilds the cut shard
    AudioCache(tmp_path / "c")
    (tmp_path / "c" / "noise" / "shard-00000.npy").unlink()
    with pytest.raises(CacheError, match="is missing"):
        AudioCache(tmp_path / "c")


def test_audio_cache_errors(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        AudioCache(tmp_path / "missing")
    with pytest.raises(CacheError, match="no index.json"):
        AudioCache(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CacheError, match="not a dfnet4-cache"):
        AudioCache(tmp_path)


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    return AudioCache(ensure_builtin(tmp_path_factory.mktemp("builtin"), num_speech=6, num_noise=4,
                                     speech_seconds=1.0, noise_seconds=1.5, progress=False))


def test_builtin_set_is_generated_once(builtin):
    assert builtin.num_clips("speech") == 6 and builtin.num_clips("noise") == 4
    again = ensure_builtin(builtin.directory.parent, num_speech=6, num_noise=4, speech_seconds=1.0,
                           noise_seconds=1.5, progress=False)
    assert again == builtin.directory


def test_mixer_is_a_pure_function_of_seed_epoch_index(builtin):
    cfg = MixConfig(segment_seconds=0.5, snr_db=[5.0])
    m1, m2 = Mixer(builtin, cfg, seed=7), Mixer(builtin, cfg, seed=7)
    a = m1.sample("train", 3, 11)
    m1.sample("train", 0, 0)  # order of calls does not matter
    b = m2.sample("train", 3, 11)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = m1.sample("train", 4, 11)
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[1], Mixer(builtin, cfg, seed=8).sample("train", 3, 11)[1])


def test_mixer_snr_and_gain(builtin):
    for snr in (-5.0, 0.0, 20.0):
        m = Mixer(builtin, MixConfig(segment_seconds=0.5, snr_db=[snr], speech_gain_db=[0.0]), seed=1)
        for i in range(3):
            clean, noisy = m.sample("train", 0, i)
            noise = noisy - clean
            if _power(clean) > 1e-9:  # a crop that is all pause has no defined SNR
                assert abs(10 * np.log10(_power(clean) / _power(noise)) - snr) < 0.05
            assert np.abs(noisy).max() <= 0.99 + 1e-6


def test_mixer_reverb_uses_rirs(tmp_path, audio_dirs):
    speech, noise, rir = audio_dirs
    prepare(tmp_path / "c", speech, noise, rir, progress=False)
    cache = AudioCache(tmp_path / "c")
    dry = Mixer(cache, MixConfig(segment_seconds=0.2, p_reverb=0.0, snr_db=[40.0], speech_gain_db=[0.0]), seed=3)
    wet = Mixer(cache, MixConfig(segment_seconds=0.2, p_reverb=1.0, snr_db=[40.0], speech_gain_db=[0.0]), seed=3)
    c_dry, n_dry = dry.sample("train", 0, 0)
    c_wet, n_wet = wet.sample("train", 0, 0)
    # reverberant input differs from its early-reflection target by more than the 40 dB noise
    assert _power(n_wet - c_wet) > 10 * _power(n_dry - c_dry)
    assert np.all(np.isfinite(n_wet)) and np.abs(n_wet).max() <= 0.99 + 1e-6


def test_loader_shards_by_rank_and_prefetches(builtin):
    m = Mixer(builtin, MixConfig(segment_seconds=0.1), seed=5)
    loaders = [BatchLoader(m, batch_size=2, samples_per_epoch=12, rank=r, world_size=2) for r in range(2)]
    assert loaders[0].batches_per_epoch == 3
    seen = [i for ld in loaders for b in range(3) for i in ld.indices(b)]
    assert sorted(seen) == list(range(12))  # the ranks split every epoch exactly
    batches = list(loaders[1].iterate(epoch=2, start_batch=1))
    assert [b for b, _, _ in batches] == [1, 2]
    clean, noisy = loaders[1].batch(2, 1)
    np.testing.assert_array_equal(batches[0][1], clean)
    np.testing.assert_array_equal(batches[0][2], noisy)
    val1, val2 = validation_set(m, 3, 2), validation_set(m, 3, 2)
    assert [v[0].shape[0] for v in val1] == [2, 1]
    np.testing.assert_array_equal(val1[1][1], val2[1][1])


def test_loader_errors(builtin):
    m = Mixer(builtin, MixConfig(segment_seconds=0.1), seed=5)
    with pytest.raises(ValueError, match="samples_per_epoch: got 3"):
        BatchLoader(m, batch_size=2, samples_per_epoch=3, world_size=2)
    with pytest.raises(ValueError, match="segment_seconds"):
        Mixer(builtin, MixConfig(segment_seconds=-1), seed=0)

    class Broken(Mixer):
        def sample(self, split, epoch, index):
            raise OSError("disk gone")

    ld = BatchLoader(Broken(builtin, MixConfig(segment_seconds=0.1), seed=0), 2, 8)
    with pytest.raises(OSError, match="disk gone"):  # the prefetch thread's error reaches the consumer
        list(ld.iterate(0))


def test_loader_stopped_early_leaves_no_blocked_thread(builtin):
    """A run that stops mid-epoch (a signal, --steps) closes the iterator while the producer waits on a
    full queue at the epoch's end; the producer must end (it used to block on its end marker, so
    every such stop waited 5 s and left the thread behind)."""
    import threading
    import time

    m = Mixer(builtin, MixConfig(segment_seconds=0.1), seed=5)
    ld = BatchLoader(m, batch_size=1, samples_per_epoch=6, prefetch=2)
    batches = ld.iterate(0)
    for _ in range(4):
        next(batches)
    time.sleep(0.5)  # the producer has queued batches 4 and 5 and reached its end marker
    batches.close()
    assert not [t for t in threading.enumerate() if t.name == "dfnet4-prefetch-e0" and t.is_alive()]
