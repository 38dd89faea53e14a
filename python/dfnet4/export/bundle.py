"""The model bundle: a .tar.gz holding enc.onnx, erb_dec.onnx, df_dec.onnx and config.ini, laid
out as DeepFilterNet3_onnx.tar.gz is (libDF finds the members by file name).

config.ini has the sections and keys DeepFilterNet's config has: libDF's runtime reads
[train] model (must be deepfilternet3), [df] sr, fft_size, hop_size, nb_erb, nb_df,
min_nb_erb_freqs, norm_tau, df_order, df_lookahead and [deepfilternet] conv_lookahead, conv_ch;
`dfnet4.convert` reads the rest to rebuild the model, and a [dfnet4] section records what
DeepFilterNet's config cannot say (the DF decoder GRU's input groups) and where it came from.
"""

from __future__ import annotations

import configparser
import gzip
import io
import os
import tarfile
from pathlib import Path

MEMBER_DIR = "tmp/export"  # the official bundle's layout
GRAPHS = ("enc", "erb_dec", "df_dec")


def config_ini(cfg, source: str = "") -> str:
    def pair(v) -> str:
        return ",".join(str(int(a)) for a in v)

    cp = configparser.ConfigParser()
    cp["train"] = {"model": "deepfilternet3"}
    cp["df"] = {
        "sr": cfg.sr, "fft_size": cfg.fft_size, "hop_size": cfg.hop_size, "nb_erb": cfg.nb_erb, "nb_df": cfg.nb_df,
        "norm_tau": f"{cfg.norm_tau:g}", "lsnr_max": f"{cfg.lsnr_max:g}", "lsnr_min": f"{cfg.lsnr_min:g}",
        "min_nb_erb_freqs": cfg.min_nb_erb_freqs, "pad_mode": "output", "df_order": cfg.df_order,
        "df_lookahead": cfg.df_lookahead,
    }
    cp["deepfilternet"] = {
        "conv_lookahead": cfg.conv_lookahead, "conv_ch": cfg.conv_ch, "conv_depthwise": "True",
        "emb_hidden_dim": cfg.emb_hidden_dim, "emb_num_layers": cfg.emb_num_layers,
        "enc_linear_groups": cfg.enc_linear_groups, "linear_groups": cfg.linear_groups,
        "conv_dec_mode": "transposed", "convt_depthwise": "False", "mask_pf": "False",
        "df_hidden_dim": cfg.df_hidden_dim, "df_num_layers": cfg.df_num_layers, "dfop_method": "df",
        "group_shuffle": "False", "conv_kernel": pair(cfg.conv_kernel), "df_gru_skip": "groupedlinear",
        "df_pathway_kernel_size_t": cfg.df_pathway_kernel_size_t, "enc_concat": "False",
        "conv_kernel_inp": pair(cfg.conv_kernel_inp), "emb_gru_skip": "none", "df_n_iter": 1,
        "convt_kernel": pair(cfg.convt_kernel), "lsnr_dropout": "False",
    }
    cp["dfnet4"] = {"df_gru_linear_groups": cfg.df_gru_linear_groups, "source": source.replace("%", "%%")}
    buf = io.StringIO()
    cp.write(buf)
    return buf.getvalue()


def targz(members: dict[str, bytes]) -> bytes:
    """Deterministic .tar.gz (fixed times and owners): the same model gives the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{MEMBER_DIR}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuse before any work is done: an existing file (without overwrite), a folder, a missing
    or unwritable parent folder."""
    if path.is_dir():
        raise FileExistsError(f"-o: {str(path)!r} is a folder; give the bundle's file name (e.g. model.tar.gz)")
    if path.exists() and not overwrite:
        raise FileExistsError(f"-o: {str(path)!r} exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise FileNotFoundError(f"-o: {str(parent)!r} {what}; cannot write {path.name!r} there")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"-o: folder {str(parent)!r} is not writable")
