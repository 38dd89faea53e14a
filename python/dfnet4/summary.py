"""Model summary: trainable parameters per part of DfNet4, and per backbone.

`python -m dfnet4.summary` prints the table for every registered backbone.
"""

from __future__ import annotations

import argparse

from mlx.utils import tree_flatten

from dfnet4 import backbones
from dfnet4.model import DfNet4, DfNet4Config

# the temporal models (backbone instances) and the parts around them
BACKBONE_PARTS = ("enc.emb_gru", "erb_dec.emb_gru", "df_dec.df_gru")


def _part(name: str) -> str:
    for p in BACKBONE_PARTS:
        if name.startswith(p + "."):
            return p
    top, sub = name.split(".")[:2]
    return f"{top}.{sub}"


def parameter_counts(model: DfNet4) -> dict[str, int]:
    """Trainable parameters per part (e.g. 'enc.erb_conv0', 'df_dec.df_gru'), in model order."""
    counts: dict[str, int] = {}
    for name, value in tree_flatten(model.trainable_parameters()):
        part = _part(name)
        counts[part] = counts.get(part, 0) + value.size
    return counts


def summary(model: DfNet4) -> dict:
    counts = parameter_counts(model)
    temporal = sum(counts.get(p, 0) for p in BACKBONE_PARTS)
    total = sum(counts.values())
    return {"backbone": model.config.backbone, "parts": counts, "temporal": temporal, "total": total}


def format_table(summaries: list[dict]) -> str:
    parts = list(dict.fromkeys(p for s in summaries for p in s["parts"]))
    head = "| part | " + " | ".join(s["backbone"] for s in summaries) + " |"
    lines = [head, "|" + "---|" * (len(summaries) + 1)]
    for p in parts:
        lines.append(f"| {p} | " + " | ".join(f"{s['parts'].get(p, 0):,}" for s in summaries) + " |")
    lines.append("| **temporal models** | " + " | ".join(f"{s['temporal']:,}" for s in summaries) + " |")
    lines.append("| **total** | " + " | ".join(f"**{s['total']:,}**" for s in summaries) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="DfNet4 parameters per part and backbone")
    ap.add_argument("--backbone", action="append", help="backbone name (default: all registered)")
    args = ap.parse_args(argv)
    names = args.backbone or backbones.names()
    # the fused flags do not change parameters; the reference paths need no compiled extension
    sums = [summary(DfNet4(DfNet4Config(backbone=n).with_fused(False))) for n in names]
    print(format_table(sums))


if __name__ == "__main__":
    main()
