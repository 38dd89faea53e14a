"""dfnet4-bench end to end on the real implementations, at tiny shapes with one repeat: every
implementation and measurement must run without error, and the files must be written."""

import json

import dfnet4  # noqa: F401  (before mlx.core, so MLX binds the optimised BLAS)
import mlx.core as mx
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


@pytest.fixture
def no_compile_jit():
    # mx.compile on the CPU JIT-compiles fused kernels with the system C++ compiler: minutes for a
    # fresh model on a CI machine. The compiled step itself is exercised by test_bench_harness on a
    # stand-in model; here the real model's step runs with compile disabled.
    mx.disable_compile()
    yield
    mx.enable_compile()


def test_model_level_on_the_real_model(tmp_path, no_compile_jit):
    small = '{"conv_ch": 16, "emb_hidden_dim": 32, "df_hidden_dim": 32}'
    assert main([*TINY, "--only", "gru/fused,attention", "--measures", "model_forward,model_fwd_bwd,train_step",
                 "--model-config", small, "--out", str(tmp_path), "--no-plot"]) == 0
    data = json.loads((tmp_path / "backbones.json").read_text())
    assert [r["name"] for r in data["implementations"]] == ["gru/fused", "attention"]
    for row in data["implementations"]:
        assert row["info"]["model_config"]["conv_ch"] == 16
        assert row["info"]["model_config"]["backbone"] == row["backbone"]
        for key, cell in row["results"].items():
            assert "error" not in cell, f"{row['name']} {key}: {cell.get('error')}"
    assert data["loss"].startswith("DeepFilterNet loss of dfnet4.train")
    text = (tmp_path / "backbones.md").read_text()
    assert "The user's table, rebuilt" in text and "| gru/fused |" in text


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
        (["--blas-threads", "0"], "--blas-threads"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_every_measure_has_a_label():
    assert set(MEASURES) == {"backbone_forward", "backbone_fwd_bwd", "model_forward", "model_fwd_bwd", "train_step"}
