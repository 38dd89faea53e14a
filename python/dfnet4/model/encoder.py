"""DeepFilterNet3's encoder: ERB and complex-feature convolutions, embedding backbone, LSNR head."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from dfnet4 import backbones
from dfnet4.backbones import GroupedLinear
from dfnet4.model.config import DfNet4Config
from dfnet4.model.layers import ConvNormAct


def make_backbone(cfg: DfNet4Config, input_size: int, hidden_size: int, output_size: int | None,
                  num_layers: int, linear_groups: int) -> nn.Module:
    return backbones.create(cfg.backbone, input_size, hidden_size, output_size, num_layers=num_layers,
                            linear_groups=linear_groups, **cfg.backbone_options())


class Encoder(nn.Module):
    def __init__(self, cfg: DfNet4Config):
        super().__init__()
        ch = cfg.conv_ch
        self.nb_erb, self.nb_df = cfg.nb_erb, cfg.nb_df
        self.erb_conv0 = ConvNormAct(1, ch, cfg.conv_kernel_inp)
        self.erb_conv1 = ConvNormAct(ch, ch, cfg.conv_kernel, fstride=2)
        self.erb_conv2 = ConvNormAct(ch, ch, cfg.conv_kernel, fstride=2)
        self.erb_conv3 = ConvNormAct(ch, ch, cfg.conv_kernel, fstride=1)
        self.df_conv0 = ConvNormAct(2, ch, cfg.conv_kernel_inp)
        self.df_conv1 = ConvNormAct(ch, ch, cfg.conv_kernel, fstride=2)
        self.emb_dim = ch * cfg.nb_erb // 4
        self.df_fc_emb = GroupedLinear(ch * cfg.nb_df // 2, self.emb_dim, cfg.enc_linear_groups)
        self.emb_gru = make_backbone(cfg, self.emb_dim, cfg.emb_hidden_dim, self.emb_dim, 1, cfg.linear_groups)
        self.lsnr_fc = nn.Linear(self.emb_dim, 1)
        self.lsnr_scale = cfg.lsnr_max - cfg.lsnr_min
        self.lsnr_offset = cfg.lsnr_min

    def __call__(self, feat_erb: mx.array, feat_spec: mx.array, state: dict | None = None):
        """feat_erb (B, T, E), feat_spec (B, T, nb_df, 2) -> e0..e3, emb, c0, lsnr (B, T), state."""
        b, t = feat_erb.shape[:2] if feat_erb.ndim == 3 else (None, None)
        if feat_erb.ndim != 3 or feat_erb.shape[2] != self.nb_erb:
            raise ValueError(f"Encoder: feat_erb must have shape (batch, frames, {self.nb_erb}), got {tuple(feat_erb.shape)}")
        if feat_spec.shape != (b, t, self.nb_df, 2):
            raise ValueError(
                f"Encoder: feat_spec must have shape ({b}, {t}, {self.nb_df}, 2), got {tuple(feat_spec.shape)}"
            )
        st = state or {}
        e0, h_erb = self.erb_conv0(feat_erb[..., None], st.get("erb_conv0"))
        e1, _ = self.erb_conv1(e0)
        e2, _ = self.erb_conv2(e1)
        e3, _ = self.erb_conv3(e2)
        c0, h_df = self.df_conv0(feat_spec, st.get("df_conv0"))
        c1, _ = self.df_conv1(c0)
        cemb = nn.relu(self.df_fc_emb(c1.reshape(b, t, -1)))
        emb = e3.reshape(b, t, -1) + cemb
        emb, h_gru = self.emb_gru(emb, st.get("emb_gru"))
        lsnr = mx.sigmoid(self.lsnr_fc(emb))[..., 0] * self.lsnr_scale + self.lsnr_offset
        return (e0, e1, e2, e3, emb, c0, lsnr), {"erb_conv0": h_erb, "df_conv0": h_df, "emb_gru": h_gru}
