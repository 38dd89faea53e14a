"""The step profiler (dfnet4.bench.profile) and the fused-layer switch (dfnet4.bench.variants), on a
small DfNet4 at tiny shapes."""

from __future__ import annotations

import dfnet4  # noqa: F401  (before mlx.core, so MLX binds the optimised BLAS)
import mlx.core as mx
import pytest

from dfnet4 import _extension
from dfnet4.bench import objective, profile, variants
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.model.batchnorm import BatchNorm
from dfnet4.model.layers import ConvNormAct, DepthwiseTransposedConv, GroupedConv

SMALL = dict(conv_ch=16, emb_hidden_dim=32, df_hidden_dim=32, backbone="gru", gru={"fused": False})


@pytest.fixture(scope="module")
def small():
    mx.random.seed(0)
    model = DfNet4(DfNet4Config.from_dict(SMALL))
    task = objective.resolve(model)
    batch = task.make_batch(1, 6)
    mx.eval(model.parameters(), batch)
    return model, task, batch


def test_every_layer_and_part_is_timed_once_and_nesting_is_marked(small):
    model, task, batch = small
    result = profile.profile(model, batch, task.loss, warmup=0, repeats=1, log=lambda _m: None)
    rows = {r["name"]: r for r in result["rows"]}
    blocks = [n for n, m in model.named_modules() if isinstance(m, ConvNormAct)]
    assert blocks and all(b in rows and not rows[b]["nested"] for b in blocks)
    assert rows["enc.erb_conv1.norm"]["nested"] and rows["enc.erb_conv1.conv"]["nested"]
    assert rows["erb_dec.emb_gru.linear_in"]["nested"] and not rows["erb_dec.emb_gru"]["nested"]
    assert not rows["enc.df_fc_emb"]["nested"]
    for part in ("STFT of clean and noisy audio", "iSTFT of the enhanced spectrum", "loss: spectral (960-point)",
                 "loss: multi-resolution STFT, 256-point", "clip_grad_norm + AdamW update"):
        assert part in rows
    assert rows["clip_grad_norm + AdamW update"]["fwd_bwd_ms"] is None
    assert all(r["forward_ms"] > 0 for r in result["rows"])
    assert result["totals"]["model_fwd_bwd_ms"] > 0
    text = profile.markdown(result, "t")
    assert "| conv blocks (conv + BatchNorm + activation) |" in text and "  of which BatchNorm (+ ReLU)" in text
    # the recording classes were put back
    assert all(type(m).__name__ in {"BatchNorm", "GroupedConv", "ConvNormAct"} or "Recording" not in type(m).__name__
               for _, m in model.named_modules())


@pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext is not built")
def test_variants_switch_every_fused_layer(small):
    model, _, _ = small
    switchable = [m for _, m in model.named_modules() if isinstance(m, (BatchNorm, GroupedConv, DepthwiseTransposedConv))]
    variants.apply(model, variants.PURE_MLX)
    assert not any(m.fused for m in switchable)
    variants.apply(model, variants.Fused(norm=True, conv=False))
    assert all(m.fused == isinstance(m, BatchNorm) for m in switchable)
    variants.apply(model, variants.Fused())
    assert all(m.fused for m in switchable)
