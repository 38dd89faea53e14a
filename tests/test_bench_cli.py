"""dfnet4-bench end to end on the real implementations, at tiny shapes with one repeat: every
implementation and measurement must run without error, and the files must be written."""

import json

import pytest

from dfnet4.bench.suite import DEFAULT_IMPLS, MEASURES
from dfnet4.cli.bench import main

TINY = ["--batch", "1", "--frames", "6", "--hidden", "16", "--repeats", "1", "--warmup", "0", "--quiet"]


def test_backbone_table_on_every_implementation(tmp_path, capsys):
    assert main([*TINY, "--measures", "backbone_forward,backbone_fwd_bwd", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "backbones.json").read_text())
    assert [r["name"] for r in data["implementations"]] == [i.name for i in DEFAULT_IMPLS]
    for row in data["implementations"]:
        assert set(row["results"]) == {"backbone_forward", "backbone_fwd_bwd"}
        for key, cell in row["results"].items():
            assert "error" not in cell, f"{row['name']} {key}: {cell.get('error')}"
    assert (tmp_path / "backbones.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert printed.startswith((tmp_path / "backbones.md").read_text())
    assert "Target ratios:" in printed


def test_scaling_on_attention(tmp_path):
    assert main([*TINY, "--scaling", "--only", "attention", "--scaling-frames", "4,8", "--out", str(tmp_path),
                 "--name", "s", "--no-plot"]) == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["measure"] == "backbone_fwd_bwd"
    (row,) = data["implementations"]
    assert [p["frames"] for p in row["points"]] == [4, 8] and all("median_ms" in p for p in row["points"])
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--only", "lstm"], "--only"),
        (["--measures", "backward"], "--measures"),
        (["--model-config", "[1]"], "--model-config"),
        (["--batch", "0"], "batch"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_every_measure_has_a_label():
    assert set(MEASURES) == {"backbone_forward", "backbone_fwd_bwd", "model_forward", "model_fwd_bwd", "train_step"}
