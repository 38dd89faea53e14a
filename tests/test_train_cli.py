"""dfnet4-train's command line: config printing/reading, and clear errors for bad arguments."""

from __future__ import annotations

import pytest

from _train_helpers import tiny_config
from dfnet4 import _extension
from dfnet4.cli.train import main
from dfnet4.train.config import RunConfig, apply_dict, tomllib


def _err(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfnet4-train: error: ")
    return err


def test_print_config_round_trips(tmp_path, capsys):
    assert main(["--backbone", "gru", "--no-fused-gru", "--steps", "7", "--lr", "1e-3", "--batch-size", "3",
                 "--model", "conv_ch=16", "--segment-seconds", "1.5", "--print-config"]) == 0
    text = capsys.readouterr().out
    d = tomllib.loads(text)
    assert d["model"] == {"backbone": "gru", "gru": {"fused": False}, "conv_ch": 16}
    assert d["train"]["steps"] == 7 and d["train"]["lr"] == 1e-3 and d["train"]["batch_size"] == 3
    assert d["data"]["mix"]["segment_seconds"] == 1.5
    (tmp_path / "run.toml").write_text(text)
    # reading it back gives the same config; flags still override the file
    assert main(["--config", str(tmp_path / "run.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out == text
    assert main(["--config", str(tmp_path / "run.toml"), "--epochs", "2", "--print-config"]) == 0
    d2 = tomllib.loads(capsys.readouterr().out)
    assert d2["train"]["epochs"] == 2 and d2["train"]["steps"] == 0  # --epochs alone trains by epochs
    assert RunConfig.from_dict(d).to_toml() == text


def test_fused_flag_with_the_wrong_backbone(capsys):
    assert "--fused-scan applies to --backbone mamba only, got --backbone gru" in _err(
        capsys, ["--backbone", "gru", "--fused-scan", "--print-config"])
    assert "--no-fused-gru applies to --backbone gru only, got --backbone attention" in _err(
        capsys, ["--backbone", "attention", "--no-fused-gru", "--print-config"])


def test_fused_scan_needs_the_extension(capsys):
    if _extension.available():
        assert main(["--backbone", "mamba", "--fused-scan", "--print-config"]) == 0
        assert tomllib.loads(capsys.readouterr().out)["model"]["mamba"] == {"fused": True}
    else:  # the failure must say why, not fall back silently
        err = _err(capsys, ["--backbone", "mamba", "--fused-scan", "--print-config"])
        assert "--fused-scan: the fused kernels are not available" in err and "dfnet4._ext" in err


@pytest.mark.parametrize("argv, message", [
    (["--lr", "-1"], "--lr: got -1.0, need a finite number > 0"),
    (["--batch-size", "0"], "--batch-size: got 0, need an integer >= 1"),
    (["--clip-grad", "0"], "--clip-grad: got 0.0, need a finite number > 0"),
    (["--steps", "0", "--epochs", "0"], "nothing to train"),
    (["--segment-seconds", "-2"], "--segment-seconds: got -2.0, need a finite number >= 0.02"),
    (["--model", "conv_ch"], "--model: got 'conv_ch', need KEY=VALUE"),
])
def test_bad_values(capsys, argv, message):
    assert message in _err(capsys, [*argv, "--print-config"])


def test_bad_backbone_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--backbone", "lstm"])
    assert info.value.code == 2 and "invalid choice: 'lstm'" in capsys.readouterr().err


def test_bad_config_files(tmp_path, capsys):
    assert "--config: file" in _err(capsys, ["--config", str(tmp_path / "none.toml")])
    (tmp_path / "bad.toml").write_text("[train\nlr = ")
    assert "is not valid TOML" in _err(capsys, ["--config", str(tmp_path / "bad.toml")])
    (tmp_path / "typo.toml").write_text("[train]\nlearning_rate = 0.1\n")
    assert f"train.learning_rate (in {tmp_path / 'typo.toml'}): unknown key" in _err(
        capsys, ["--config", str(tmp_path / "typo.toml")])
    (tmp_path / "type.toml").write_text("[train]\nlr = \"fast\"\n")
    assert f"train.lr (in {tmp_path / 'type.toml'}): got 'fast', need a finite number > 0" in _err(
        capsys, ["--config", str(tmp_path / "type.toml")])


def test_missing_or_bad_cache_dir(tmp_path, capsys):
    err = _err(capsys, ["--cache-dir", str(tmp_path / "nope"), "--steps", "1"])
    assert "does not exist; create it with dfnet4-prepare" in err
    err = _err(capsys, ["--cache-dir", str(tmp_path), "--steps", "1"])
    assert "has no index.json" in err


def test_bad_model_field_is_reported(tmp_path, tmp_path_factory, capsys):
    cfg = tiny_config(tmp_path / "run", tmp_path_factory.getbasetemp() / "builtin")
    cfg.model["not_a_field"] = 1
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    assert "not_a_field" in _err(capsys, ["--config", str(tmp_path / "c.toml"), "--no-progress"])


def test_apply_dict_rejects_non_tables():
    with pytest.raises(ValueError, match="data: got 3, need a table"):
        apply_dict(RunConfig(), {"data": 3})
