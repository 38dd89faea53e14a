"""DeepFilterNet3's decoders: the ERB-mask decoder and the deep-filter coefficient decoder."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from dfnet4.backbones import GroupedLinear
from dfnet4.model.activations import tanh
from dfnet4.model.config import DfNet4Config
from dfnet4.model.encoder import make_backbone
from dfnet4.model.layers import ConvNormAct


class ErbDecoder(nn.Module):
    """Backbone over the embedding, then transposed convs with encoder skips -> ERB gains in (0, 1)."""

    def __init__(self, cfg: DfNet4Config):
        super().__init__()
        ch = cfg.conv_ch
        emb = ch * cfg.nb_erb // 4
        self.emb_gru = make_backbone(cfg, emb, cfg.emb_hidden_dim, emb, cfg.emb_num_layers - 1, cfg.linear_groups)
        self.conv3p = ConvNormAct(ch, ch, 1)
        self.convt3 = ConvNormAct(ch, ch, cfg.conv_kernel)
        self.conv2p = ConvNormAct(ch, ch, 1)
        self.convt2 = ConvNormAct(ch, ch, cfg.convt_kernel, fstride=2, transposed=True)
        self.conv1p = ConvNormAct(ch, ch, 1)
        self.convt1 = ConvNormAct(ch, ch, cfg.convt_kernel, fstride=2, transposed=True)
        self.conv0p = ConvNormAct(ch, ch, 1)
        self.conv0_out = ConvNormAct(ch, 1, cfg.conv_kernel, activation="sigmoid")

    def __call__(self, emb, e3, e2, e1, e0, state=None):
        b, t, f8, ch = e3.shape
        emb, state = self.emb_gru(emb, state)
        emb = emb.reshape(b, t, f8, ch)
        x = self.convt3(self.conv3p(e3)[0] + emb)[0]
        x = self.convt2(self.conv2p(e2)[0] + x)[0]
        x = self.convt1(self.conv1p(e1)[0] + x)[0]
        m = self.conv0_out(self.conv0p(e0)[0] + x)[0]
        return m[..., 0], state


class DfDecoder(nn.Module):
    """Backbone (+ grouped-linear skip) -> df coefficients, plus a conv pathway from c0."""

    def __init__(self, cfg: DfNet4Config):
        super().__init__()
        emb = cfg.conv_ch * cfg.nb_erb // 4
        self.df_order, self.nb_df = cfg.df_order, cfg.nb_df
        self.out_ch = cfg.df_order * 2
        self.df_convp = ConvNormAct(cfg.conv_ch, self.out_ch, (cfg.df_pathway_kernel_size_t, 1))
        self.df_gru = make_backbone(cfg, emb, cfg.df_hidden_dim, None, cfg.df_num_layers, cfg.df_gru_linear_groups)
        self.df_skip = GroupedLinear(emb, cfg.df_hidden_dim, cfg.linear_groups)
        self.df_out = GroupedLinear(cfg.df_hidden_dim, cfg.nb_df * self.out_ch, cfg.linear_groups)

    def __call__(self, emb: mx.array, c0: mx.array, state: dict | None = None):
        """-> coefs (B, T, nb_df, df_order, 2), state."""
        st = state or {}
        b, t, _ = emb.shape
        c, h_gru = self.df_gru(emb, st.get("df_gru"))
        c = c + self.df_skip(emb)
        p, h_conv = self.df_convp(c0, st.get("df_convp"))
        c = tanh(self.df_out(c)).reshape(b, t, self.nb_df, self.out_ch) + p
        return c.reshape(b, t, self.nb_df, self.df_order, 2), {"df_gru": h_gru, "df_convp": h_conv}
