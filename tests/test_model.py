"""DfNet4: shapes, config round trip, gradients to every parameter, streaming == offline, bad input."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from streaming_check import assert_streaming_matches_offline

from dfnet4 import _extension, backbones, dsp
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.summary import BACKBONE_PARTS, parameter_counts, summary

# A narrow DfNet4 (same structure, fewer channels) keeps the per-step reference GRUs fast.
SMALL = dict(conv_ch=16, emb_hidden_dim=32, df_hidden_dim=32, nb_df=32, enc_linear_groups=8,
             linear_groups=8, df_gru_linear_groups=8, gru={"fused": False}, mamba={"fused": False})


def small(backbone: str = "gru", **kw) -> DfNet4:
    mx.random.seed(0)
    return DfNet4(DfNet4Config.from_dict({"backbone": backbone, **SMALL, **kw}))


def noisy_spec(frames: int = 23, batch: int = 2, seed: int = 0) -> mx.array:
    audio = mx.random.normal((batch, frames * 480 - 480), key=mx.random.key(seed)) * 0.1
    return dsp.stft(audio)


def test_default_config_is_deepfilternet3():
    cfg = DfNet4Config(backbone="gru")
    assert (cfg.backbone, cfg.sr, cfg.fft_size, cfg.hop_size, cfg.nb_erb, cfg.nb_df) == ("gru", 48000, 960, 480, 32, 96)
    assert (cfg.df_order, cfg.df_lookahead, cfg.conv_lookahead, cfg.conv_ch, cfg.emb_hidden_dim) == (5, 2, 2, 64, 256)
    total = summary(DfNet4(DfNet4Config.from_dict({"backbone": "gru", "gru": {"fused": False}})))["total"]
    assert 2_120_000 < total < 2_140_000  # DeepFilterNet3's published 2.13 M


def test_config_round_trip_and_errors():
    cfg = DfNet4Config.from_dict({"backbone": "gru", "conv_ch": 32, "attention": {"window": 16}})
    d = cfg.to_dict()
    assert d["backbone"] == "gru" and d["conv_kernel_inp"] == [3, 3]
    assert DfNet4Config.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        DfNet4Config.from_dict({**d, "nope": 1})
    with pytest.raises(ValueError, match="nb_erb"):
        DfNet4Config(nb_erb=30)
    with pytest.raises(ValueError, match="df_lookahead"):
        DfNet4Config(df_lookahead=5)
    with pytest.raises(ValueError, match="mamba_recompute"):
        DfNet4Config.from_dict({"mamba_recompute": "yes"})  # an old flat key is named as given
    with pytest.raises(ValueError, match="unknown name"):
        DfNet4(DfNet4Config(backbone="lstm"))


def test_shapes_and_ranges():
    model = small()
    spec = noisy_spec()
    enh, aux = model(spec)
    b, t = spec.shape[:2]
    assert enh.shape == spec.shape and enh.dtype == mx.float32
    assert aux["lsnr"].shape == (b, t) and aux["erb_mask"].shape == (b, t, 32)
    assert aux["df_coefs"].shape == (b, t, 32, 5, 2)
    m = np.array(aux["erb_mask"])
    assert (m > 0).all() and (m < 1).all()
    lsnr = np.array(aux["lsnr"])
    assert (lsnr > -15).all() and (lsnr < 35).all()
    audio = mx.random.normal((2, 4000)) * 0.1
    assert model.enhance(audio).shape == (2, 4000)


def test_erb_stage_uses_the_unnormalised_inverse_filterbank():
    # the bins above nb_df are the noisy bins times their band's gain, exactly
    model = small()
    spec = noisy_spec()
    enh, aux = model(spec)
    expect = dsp.apply_erb_mask(spec, aux["erb_mask"], model.erb_widths)[:, :, 32:]
    np.testing.assert_allclose(np.array(enh[:, :, 32:]), np.array(expect), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backbone", backbones.names())
def test_gradients_reach_every_parameter(backbone):
    model = small(backbone)
    model.train()
    spec = noisy_spec(frames=12)

    def loss(params):
        model.update(params)
        enh, aux = model(spec)
        return mx.mean(enh**2) + 1e-3 * mx.mean(aux["lsnr"])

    grads = mx.grad(loss)(model.trainable_parameters())
    flat = tree_flatten(grads)
    names = {k for k, _ in tree_flatten(model.trainable_parameters())}
    assert names == {k for k, _ in flat}
    dead = [k for k, g in flat if not np.any(np.array(g) != 0) or not np.all(np.isfinite(np.array(g)))]
    assert not dead, f"no (finite) gradient reaches {dead}"
    assert not any("running" in k for k in names)  # BatchNorm statistics are not trained


@pytest.mark.parametrize("backbone", backbones.names())
def test_every_temporal_model_is_the_selected_backbone(backbone):
    model = small(backbone)
    cls = backbones.get(backbone)
    parts = [model.enc.emb_gru, model.erb_dec.emb_gru, model.df_dec.df_gru]
    assert all(isinstance(p, cls) for p in parts)
    counts = parameter_counts(model)
    assert sum(counts.values()) == sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    assert all(counts[p] > 0 for p in BACKBONE_PARTS)


@pytest.mark.parametrize("warmup", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 23, [5, 7, 11], [2, 0, 21]])
def test_gru_streaming_matches_offline(chunks, warmup):
    assert_streaming_matches_offline(small("gru", warmup_lookahead=warmup), noisy_spec(), chunks)


OTHER_STREAMING_CASES = [("mamba", {}), ("attention", {}), ("attention", {"attention": {"window": 6}})]
if _extension.available():  # the fused scan and conv, fed one frame at a time too
    OTHER_STREAMING_CASES.append(("mamba", {"mamba": {"fused": True}}))


@pytest.mark.parametrize(
    "backbone,options",
    [c for c in OTHER_STREAMING_CASES if c[0] in backbones.names()]
    + [(n, {}) for n in backbones.names() if n not in ("gru", "mamba", "attention")],
)
def test_other_backbones_stream_like_offline(backbone, options):
    # attention with a window: streaming keeps the same key/value window as the offline mask
    for chunks in ([1] * 23, [5, 7, 11]):
        assert_streaming_matches_offline(small(backbone, **options), noisy_spec(), chunks)


def test_warmup_lookahead_changes_the_start():
    spec = noisy_spec(frames=60, batch=1)
    a, _ = small("gru")(spec)
    b, _ = small("gru", warmup_lookahead=True)(spec)
    a, b = np.array(a), np.array(b)
    assert a.shape == b.shape
    assert not np.allclose(a[:, :2], b[:, :2], atol=1e-6)  # the recurrent states start differently


def test_streaming_state_is_needed():
    # a stream restarted mid-way (fresh state) must differ: the state carries real information
    model = small("gru")
    model.eval()
    spec = noisy_spec()
    whole, _ = model(spec)
    state = model.init_state(2)
    _, state = model.step(spec[:, :10], state)
    fresh = model.init_state(2)
    a, _ = model.step(spec[:, 10:], state)  # frames 8..20 (the output lags by conv_lookahead)
    b, _ = model.step(spec[:, 10:], fresh)  # a new stream: frames 10..20 of the signal
    np.testing.assert_allclose(np.array(a), np.array(whole[:, 8:21]), rtol=0, atol=1e-4 * np.abs(np.array(whole)).max())
    assert not np.allclose(np.array(a[:, 2:]), np.array(b), atol=1e-4)


@pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext not built (tools/dev_build.sh)")
def test_fused_gru_model_matches_reference(device):
    spec = noisy_spec(frames=15)
    ref, _ = small("gru", gru={"fused": False})(spec)
    fused_model = small("gru", gru={"fused": True})
    assert fused_model.enc.emb_gru.core.fused
    out, _ = fused_model(spec)
    np.testing.assert_allclose(np.array(out), np.array(ref), rtol=0, atol=1e-5 * np.abs(np.array(ref)).max())


@pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext not built (tools/dev_build.sh)")
def test_fused_mamba_model_matches_reference_outputs_and_gradients(device):
    # The whole model with the fused scan and conv (and the recomputing block backward) against the
    # same weights on the reference ops: output, loss and the gradient of every parameter.
    spec = noisy_spec(frames=15)
    ref = small("mamba", mamba={"fused": False})
    fused = small("mamba", mamba={"fused": True})
    assert fused.enc.emb_gru.fused and not ref.enc.emb_gru.fused
    fused.update(ref.parameters())

    def loss(model):
        enh, aux = model(spec)
        return mx.mean(enh**2) + 1e-3 * mx.mean(aux["lsnr"]), enh

    (l_ref, enh_ref), g_ref = nn.value_and_grad(ref, loss)(ref)
    (l_fus, enh_fus), g_fus = nn.value_and_grad(fused, loss)(fused)
    np.testing.assert_allclose(np.array(enh_fus), np.array(enh_ref), rtol=0,
                               atol=1e-5 * np.abs(np.array(enh_ref)).max())
    assert abs(l_fus.item() - l_ref.item()) <= 1e-5 * abs(l_ref.item())
    # float32 with other summation orders: measured <= 6.1e-7 of each gradient's scale, where an
    # array's scale is its own max, or 1e-3 of the largest gradient for the few parameters whose
    # gradients are ~1e-10 (rounding noise of the layers around them dominates there). Bound 1e-5.
    g_ref, g_fus = dict(tree_flatten(g_ref)), dict(tree_flatten(g_fus))
    assert g_ref.keys() == g_fus.keys()
    largest = max(np.abs(np.array(g)).max() for g in g_ref.values())
    for name, g in g_ref.items():
        scale = max(np.abs(np.array(g)).max(), 1e-3 * largest)
        err = np.abs(np.array(g_fus[name]) - np.array(g)).max()
        assert err <= 1e-5 * scale, (name, err / scale)


def test_bad_input_raises_value_error_naming_the_argument():
    model = small()
    with pytest.raises(ValueError, match="spec"):
        model(mx.zeros((1, 10, 480, 2)))
    with pytest.raises(ValueError, match="spec"):
        model(mx.zeros((1, 10, 481)))
    with pytest.raises(ValueError, match="spec"):
        model(mx.zeros((1, 10, 481, 2), dtype=mx.int32))
    with pytest.raises(ValueError, match="sample_rate"):
        model.enhance(mx.zeros((1, 4800)), sample_rate=16000)
    with pytest.raises(ValueError, match="audio"):
        model.enhance(mx.zeros((4800,)))
    with pytest.raises(ValueError, match="spec"):
        model.step(mx.zeros((1, 3, 100, 2)), model.init_state(1))
    with pytest.raises(ValueError, match="x must have shape"):
        model.enc.emb_gru(mx.zeros((1, 3, 7)))
    with pytest.raises(ValueError, match="feat_erb"):
        model.enc(mx.zeros((1, 3, 31)), mx.zeros((1, 3, 32, 2)))
    with pytest.raises(ValueError, match="feat_spec"):
        model.enc(mx.zeros((1, 3, 32)), mx.zeros((1, 3, 96, 2)))


def test_summary_table():
    from dfnet4 import summary as summary_mod

    table = summary_mod.format_table([summary(small("gru"))])
    assert "| df_dec.df_gru |" in table and "**total**" in table
    total = sum(v.size for _, v in tree_flatten(small("gru").trainable_parameters()))
    assert f"**{total:,}**" in table


@pytest.mark.parametrize("backbone", backbones.names())
def test_checkpoint_restores_backbone_config_and_weights(backbone, tmp_path):
    from dfnet4.model import checkpoint

    model = small(backbone, attention={"window": 8})
    model.eval()
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save(model, path, {"step": "7"})
    loaded, meta = checkpoint.load(path)
    loaded.eval()
    assert loaded.config == model.config and meta == {"step": "7"}
    spec = noisy_spec(frames=8)
    np.testing.assert_array_equal(np.array(loaded(spec)[0]), np.array(model(spec)[0]))
    with pytest.raises(ValueError, match="dfnet4_config"):
        mx.save_safetensors(str(tmp_path / "bare.safetensors"), {"w": mx.zeros(1)})
        checkpoint.load(tmp_path / "bare.safetensors")
