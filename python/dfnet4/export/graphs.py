"""DfNet4 (gru backbone) -> DeepFilterNet3's three ONNX graphs: enc, erb_dec, df_dec.

The graphs have the official interface: channels-first tensors (batch, channels, time, freq),
the time axis a symbol `S`, no state inputs or outputs. Everything that carries over between
frames is inside: causal time padding (Pad before each conv with a time kernel) and GRUs that
start from zeros. libDF's runtime turns them into frame-by-frame models with tract's pulsing
(the pads become frame buffers, the GRUs keep their hidden state), as it does the official ones.

    enc      feat_erb (1, 1, S, nb_erb), feat_spec (1, 2, S, nb_df)
             -> e0 (1, C, S, nb_erb), e1 (.., nb_erb/2), e2, e3 (.., nb_erb/4), emb (1, S, C nb_erb/4),
                c0 (1, C, S, nb_df), lsnr (1, S, 1)
    erb_dec  emb, e3, e2, e1, e0 -> m (1, 1, S, nb_erb)
    df_dec   emb, c0 -> coefs (1, S, nb_df, 2 df_order)

The official df_dec has a second output (an unused "alpha" head that DfNet4 does not have);
libDF reads only `coefs`.
"""

from __future__ import annotations

import numpy as np

from dfnet4.export.layout import conv_to_onnx, fold_batchnorm, gru_to_onnx
from dfnet4.export.onnx_builder import GraphBuilder
from dfnet4.model.layers import ConvNormAct, DepthwiseTransposedConv

S = "S"  # the streaming (time) axis


def _np(a) -> np.ndarray:
    return np.array(a, dtype=np.float32)


def conv_block(g: GraphBuilder, block: ConvNormAct, x: str, module: str, output: str | None = None) -> str:
    """conv [+ 1x1 conv] + folded BatchNorm + activation, channels-first."""
    convs = []  # (op, onnx weight, attributes)
    if isinstance(block.conv, DepthwiseTransposedConv):
        w = _np(block.conv.weight)  # (ch, 1, kf, 1)
        ch, kf = w.shape[0], w.shape[2]
        convs.append(("ConvTranspose", w[:, 0, :, 0].reshape(ch, 1, 1, kf),
                      dict(group=ch, kernel_shape=[1, kf], strides=[1, 2], pads=[0, kf // 2, 0, kf // 2],
                           output_padding=[0, 1], dilations=[1, 1])))
    else:
        c = block.conv
        kt, kf = c.kernel
        if kt > 1:  # causal in time: kt - 1 frames of zeros before the first (tract: a frame buffer)
            x = g.node("Pad", [x, g.ints(module, [0, 0, kt - 1, 0, 0, 0, 0, 0])], f"{module}/0", mode="constant")
        convs.append(("Conv", conv_to_onnx(_np(c.weight)),
                      dict(group=c.groups, kernel_shape=[kt, kf], strides=[1, c.fstride],
                           pads=[0, kf // 2, 0, kf // 2], dilations=[1, 1])))
    if block.pointwise is not None:
        convs.append(("Conv", conv_to_onnx(_np(block.pointwise.weight)),
                      dict(group=1, kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1])))
    norm = block.norm
    w_last, bias = fold_batchnorm(convs[-1][1], _np(norm.weight), _np(norm.bias), _np(norm.running_mean),
                                  _np(norm.running_var), float(norm.eps))
    convs[-1] = (convs[-1][0], w_last, convs[-1][2])
    for i, (op, w, attrs) in enumerate(convs):
        last = i == len(convs) - 1
        sub = f"{module}/{i + 1}"
        ins = [x, g.weight(f"{module}.{i + 1}.weight", w)] + ([g.weight(f"{module}.{i + 1}.bias", bias)] if last else [])
        x = g.node(op, ins, sub, **attrs)
    act = {"relu": "Relu", "sigmoid": "Sigmoid"}[block.activation]
    return g.node(act, [x], f"{module}/{len(convs) + 1}", output=output)


def grouped_linear(g: GraphBuilder, layer, x: str, name: str, relu: bool, output: str | None = None) -> str:
    """DeepFilterNet's GroupedLinearEinsum over (batch, time, features); `name` is its PyTorch name."""
    w = _np(layer.weight)  # (groups, in/g, out/g)
    module = name.removesuffix(".weight")
    x = g.reshape_bt(x, [w.shape[0], w.shape[1]], module)
    x = g.node("Einsum", [x, g.weight(name, w)], module, equation="btgi,gih->btgh")
    x = g.reshape_bt(x, [w.shape[0] * w.shape[2]], module)
    if relu:
        return g.node("Relu", [x], module, output=output)
    return g.node("Identity", [x], module, output=output) if output else x


def squeezed_gru(g: GraphBuilder, bb, x: str, module: str, output: str | None = None) -> str:
    """SqueezedGRU_S: grouped linear in + ReLU, stacked ONNX GRUs, [grouped linear out + ReLU]."""
    x = grouped_linear(g, bb.linear_in, x, f"{module}.linear_in.0.weight", relu=bb.activation)
    x = g.node("Transpose", [x], module, perm=[1, 0, 2])  # ONNX GRUs are time-major
    for layer in bb.core.layers:
        w, r, b = gru_to_onnx(_np(layer.Wx), _np(layer.Wh), _np(layer.b), _np(layer.bhn))
        k = sum(1 for n in g.nodes if n.op_type == "GRU" and n.name.startswith(f"/{module}/"))
        ins = [x, g.weight(f"{module}.gru.W_{k}", w), g.weight(f"{module}.gru.R_{k}", r),
               g.weight(f"{module}.gru.B_{k}", b)]
        y, _ = g.node("GRU", ins, module, n_out=2, hidden_size=int(r.shape[-1]), linear_before_reset=1)
        x = g.node("Squeeze", [y], module, axes=[1])  # drop num_directions
    x = g.node("Transpose", [x], module, perm=[1, 0, 2], output=output if bb.linear_out is None else None)
    if bb.linear_out is not None:
        x = grouped_linear(g, bb.linear_out, x, f"{module}.linear_out.0.weight", relu=bb.activation, output=output)
    if bb.skip:
        raise ValueError("ONNX export: backbones with an identity skip are not part of DeepFilterNet3")
    return x


def encoder(model) -> GraphBuilder:
    cfg, enc = model.config, model.enc
    ch, e, d = cfg.conv_ch, cfg.nb_erb, cfg.nb_df
    g = GraphBuilder("enc")
    feat_erb = g.input("feat_erb", [1, 1, S, e])
    feat_spec = g.input("feat_spec", [1, 2, S, d])
    e0 = conv_block(g, enc.erb_conv0, feat_erb, "erb_conv0", output="e0")
    e1 = conv_block(g, enc.erb_conv1, e0, "erb_conv1", output="e1")
    e2 = conv_block(g, enc.erb_conv2, e1, "erb_conv2", output="e2")
    e3 = conv_block(g, enc.erb_conv3, e2, "erb_conv3", output="e3")
    c0 = conv_block(g, enc.df_conv0, feat_spec, "df_conv0", output="c0")
    c1 = conv_block(g, enc.df_conv1, c0, "df_conv1")
    # (B, C, T, F) -> (B, T, F * C): freq-major, channel-minor, as DfNet4's channels-last reshape
    c1 = g.reshape_bt(g.node("Transpose", [c1], "df_fc_emb", perm=[0, 2, 3, 1]), [ch * (d // 2)], "df_fc_emb")
    cemb = grouped_linear(g, enc.df_fc_emb, c1, "df_fc_emb.0.weight", relu=True)
    e3f = g.reshape_bt(g.node("Transpose", [e3], "combine", perm=[0, 2, 3, 1]), [ch * (e // 4)], "combine")
    emb = squeezed_gru(g, enc.emb_gru, g.node("Add", [e3f, cemb], "combine"), "emb_gru", output="emb")
    lin = enc.lsnr_fc
    x = g.node("MatMul", [emb, g.weight("lsnr_fc.0.weight_t", _np(lin.weight).T)], "lsnr_fc/0")
    x = g.node("Sigmoid", [g.node("Add", [g.weight("lsnr_fc.0.bias", _np(lin.bias)), x], "lsnr_fc/0")], "lsnr_fc/1")
    scale = g.weight("lsnr.scale", np.float32(enc.lsnr_scale))
    g.node("Add", [g.node("Mul", [x, scale], "lsnr"), g.weight("lsnr.offset", np.float32(enc.lsnr_offset))], "lsnr",
           output="lsnr")
    emb_dim = ch * e // 4
    for name, shape in (("e0", [1, ch, S, e]), ("e1", [1, ch, S, e // 2]), ("e2", [1, ch, S, e // 4]),
                        ("e3", [1, ch, S, e // 4]), ("emb", [1, S, emb_dim]), ("c0", [1, ch, S, d]),
                        ("lsnr", [1, S, 1])):
        g.output(name, shape)
    return g


def erb_decoder(model) -> GraphBuilder:
    cfg, dec = model.config, model.erb_dec
    ch, e = cfg.conv_ch, cfg.nb_erb
    g = GraphBuilder("erb_dec")
    emb = g.input("emb", [1, S, ch * e // 4])
    e3 = g.input("e3", [1, ch, S, e // 4])
    e2 = g.input("e2", [1, ch, S, e // 4])
    e1 = g.input("e1", [1, ch, S, e // 2])
    e0 = g.input("e0", [1, ch, S, e])
    x = squeezed_gru(g, dec.emb_gru, emb, "emb_gru")
    x = g.reshape_bt(x, [e // 4, ch], "emb_gru")  # (B, T, F8, C)
    x = g.node("Transpose", [x], "emb_gru", perm=[0, 3, 1, 2])
    x = conv_block(g, dec.convt3, g.node("Add", [conv_block(g, dec.conv3p, e3, "conv3p"), x], "convt3"), "convt3")
    x = conv_block(g, dec.convt2, g.node("Add", [conv_block(g, dec.conv2p, e2, "conv2p"), x], "convt2"), "convt2")
    x = conv_block(g, dec.convt1, g.node("Add", [conv_block(g, dec.conv1p, e1, "conv1p"), x], "convt1"), "convt1")
    x = g.node("Add", [conv_block(g, dec.conv0p, e0, "conv0p"), x], "conv0_out")
    conv_block(g, dec.conv0_out, x, "conv0_out", output="m")
    g.output("m", [1, 1, S, e])
    return g


def df_decoder(model) -> GraphBuilder:
    cfg, dec = model.config, model.df_dec
    g = GraphBuilder("df_dec")
    emb = g.input("emb", [1, S, cfg.conv_ch * cfg.nb_erb // 4])
    c0 = g.input("c0", [1, cfg.conv_ch, S, cfg.nb_df])
    c = squeezed_gru(g, dec.df_gru, emb, "df_gru")
    c = g.node("Add", [c, grouped_linear(g, dec.df_skip, emb, "df_skip.weight", relu=False)], "df_skip")
    p = conv_block(g, dec.df_convp, c0, "df_convp")
    p = g.node("Transpose", [p], "df_convp", perm=[0, 2, 3, 1])  # (B, T, nb_df, 2 order)
    c = g.node("Tanh", [grouped_linear(g, dec.df_out, c, "df_out.0.weight", relu=False)], "df_out/1")
    c = g.reshape_bt(c, [cfg.nb_df, dec.out_ch], "df_out")
    g.node("Add", [c, p], "coefs", output="coefs")
    g.output("coefs", [1, S, cfg.nb_df, dec.out_ch])
    return g


def build(model) -> dict:
    """{"enc": ModelProto, "erb_dec": ..., "df_dec": ...} for a gru-backbone DfNet4."""
    doc = f"dfnet4 export of a DfNet4 ({model.config.backbone} backbone) in DeepFilterNet3's graph format"
    return {name: fn(model).model(doc) for name, fn in
            (("enc", encoder), ("erb_dec", erb_decoder), ("df_dec", df_decoder))}
