"""Each backbone owns its options: the registry, the [model.<backbone>] tables, one default backbone,
and the flat keys of the old layout (config files, --model, checkpoints) still loading."""

from __future__ import annotations

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest

from _train_helpers import TINY_MODEL, tiny_config
from dfnet4 import backbones
from dfnet4.backbones.attention import AttentionOptions
from dfnet4.backbones.gru import GruOptions
from dfnet4.backbones.mamba import MambaOptions
from dfnet4.cli import train as train_cli
from dfnet4.model import DfNet4Config
from dfnet4.schema import ConfigError
from dfnet4.train import checkpoint as ckpt
from dfnet4.train.config import RunConfig, tomllib
from dfnet4.train.loop import Trainer

# The flat [model] keys before the per-backbone tables, spelled here as they were (not derived from
# the code under test): backbone -> {option: old key}.
OLD_KEYS = {
    "mamba": {"d_state": "mamba_d_state", "d_conv": "mamba_d_conv", "expand": "mamba_expand",
              "recompute": "mamba_recompute", "fused": "fused_scan"},
    "gru": {"fused": "fused_gru"},
    "attention": {"heads": "attention_heads", "window": "attention_window", "ffn_expand": "attention_ffn_expand"},
}


def old_layout(table: dict) -> dict:
    """A nested [model] table written in the old flat layout."""
    flat = {k: v for k, v in table.items() if k not in OLD_KEYS}
    for name, options in OLD_KEYS.items():
        for option, value in table.get(name, {}).items():
            if option not in options:  # added since (keep_in_proj): the old layout had no key for it
                continue
            flat[options[option]] = value
    return flat


def test_the_registry_holds_each_backbone_with_its_options():
    assert backbones.names() == ["attention", "gru", "mamba"]
    assert {n: backbones.options_class(n) for n in backbones.names()} == {
        "attention": AttentionOptions, "gru": GruOptions, "mamba": MambaOptions}
    assert backbones.fused_flags() == {"fused_gru": "gru", "fused_scan": "mamba"}
    cfg = DfNet4Config()
    assert [isinstance(getattr(cfg, n), backbones.options_class(n)) for n in backbones.names()] == [True] * 3
    assert set(OLD_KEYS) == set(backbones.names())


def test_one_default_backbone():
    assert backbones.DEFAULT == "mamba"
    assert DfNet4Config().backbone == RunConfig().model["backbone"] == backbones.DEFAULT


def test_the_cli_offers_the_registered_backbones_and_fused_flags(capsys):
    parser = train_cli.build_parser()
    backbone = next(a for a in parser._actions if a.dest == "backbone")
    assert list(backbone.choices) == backbones.names()
    options = {o for a in parser._actions for o in a.option_strings}
    assert {"--fused-scan", "--no-fused-scan", "--fused-gru", "--no-fused-gru"} <= options
    assert train_cli.main(["--print-config"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["model"] == {"backbone": backbones.DEFAULT}


NEW = {"backbone": "attention", "conv_ch": 16, "mamba": {"d_state": 8, "d_conv": 3, "expand": 3, "recompute": False,
                                                         "fused": False},
       "gru": {"fused": False}, "attention": {"heads": 2, "window": 5, "ffn_expand": 3}}


def test_old_flat_keys_give_the_same_config_as_the_tables():
    old = old_layout(NEW)
    assert "mamba_d_state" in old and "fused_gru" in old and "mamba" not in old
    cfg = DfNet4Config.from_dict(NEW)
    assert (cfg.mamba.d_state, cfg.mamba.fused, cfg.gru.fused, cfg.attention.window) == (8, False, False, 5)
    assert DfNet4Config.from_dict(old) == cfg
    dotted = {"backbone": "attention", "conv_ch": 16, **{f"{n}.{o}": v for n, t in NEW.items() if isinstance(t, dict)
                                                         for o, v in t.items()}}
    assert DfNet4Config.from_dict(dotted) == cfg
    assert DfNet4Config.from_dict(cfg.to_dict()) == cfg
    # stored nested; an option added after the flat layout (keep_in_proj) takes its default
    assert cfg.to_dict()["mamba"] == {**NEW["mamba"], "keep_in_proj": True}


def test_old_flat_keys_in_a_file_and_on_the_command_line(tmp_path, capsys):
    import tomli_w

    new = {**NEW, "mamba": {k: v for k, v in NEW["mamba"].items() if k != "fused"}}
    del new["gru"]  # a fused switch of another backbone than the run's is refused by dfnet4-train
    printed = []
    for name, model in (("new", new), ("old", old_layout(new))):
        (tmp_path / f"{name}.toml").write_text(tomli_w.dumps({"model": model}))
        assert train_cli.main(["--config", str(tmp_path / f"{name}.toml"), "--print-config"]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1]
    assert tomllib.loads(printed[1])["model"]["mamba"] == new["mamba"]
    for key in ("mamba_d_state=8", "mamba.d_state=8"):
        assert train_cli.main(["--model", key, "--print-config"]) == 0
        assert tomllib.loads(capsys.readouterr().out)["model"] == {"backbone": "mamba", "mamba": {"d_state": 8}}
    # a later layer overrides an earlier one whatever its spelling: the flag wins over the file's old key
    assert train_cli.main(["--config", str(tmp_path / "old.toml"), "--backbone", "mamba", "--fused-scan",
                           "--model", "mamba.d_state=4", "--print-config"]) in (0, 2)
    out = capsys.readouterr()
    if not out.err:  # (exit 2 only where the extension is missing, for --fused-scan)
        assert tomllib.loads(out.out)["model"]["mamba"] == {**new["mamba"], "d_state": 4, "fused": True}


def test_both_spellings_disagreeing_is_an_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"mamba\.d_state: got 4, but mamba_d_state = 8 sets the same option"):
        DfNet4Config.from_dict({"mamba_d_state": 8, "mamba": {"d_state": 4}})
    assert DfNet4Config.from_dict({"mamba_d_state": 8, "mamba": {"d_state": 8}}).mamba.d_state == 8  # agreeing
    (tmp_path / "c.toml").write_text("[model]\nfused_gru = true\n[model.gru]\nfused = false\n")
    assert train_cli.main(["--config", str(tmp_path / "c.toml"), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfnet4-train: error: model.gru.fused") and "fused_gru = True" in err, err
    assert err.count("\n") == 1


def test_errors_name_the_key_as_the_user_spelled_it(tmp_path, capsys):
    cases = [(["--model", "mamba_d_state=0"], "--model mamba_d_state: got 0, need an integer >= 1"),
             (["--model", "mamba.d_state=0"], "--model mamba.d_state: got 0, need an integer >= 1"),
             (["--model", "mamba.bogus=1"], "--model mamba.bogus: unknown key (known here: d_state"),
             (["--model", "mamba=3"], "--model mamba: got 3, need a table"),
             (["--backbone", "attention", "--model", "attention.heads=3"], "--model attention.heads: got 3, need a "
              "divisor of emb_hidden_dim (256)")]
    for argv, message in cases:
        assert train_cli.main([*argv, "--print-config"]) == 2
        assert capsys.readouterr().err.startswith(f"dfnet4-train: error: {message}"), argv
    (tmp_path / "c.toml").write_text("[model]\nattention_window = 0\n")
    assert train_cli.main(["--config", str(tmp_path / "c.toml"), "--print-config"]) == 2
    assert capsys.readouterr().err.startswith(
        f"dfnet4-train: error: model.attention_window (in {tmp_path / 'c.toml'}): got 0, need an integer >= 1")


def _rewrite_in_old_layout(checkpoint_dir):
    """The checkpoint's stored configs as a dfnet4 before the per-backbone tables wrote them."""
    path = checkpoint_dir / ckpt.STATE
    state = json.loads(path.read_text())
    assert "mamba" in state["model_config_full"]  # written nested today
    state["model_config"] = old_layout(state["model_config"])
    state["model_config_full"] = old_layout(state["model_config_full"])
    state["run_config"]["model"] = old_layout(state["run_config"]["model"])
    path.write_text(json.dumps(state, indent=1))
    return state


def test_an_old_layout_checkpoint_loads_resumes_and_enhances_identically(tmp_path, tmp_path_factory):
    from dfnet4.enhance import enhance_array, load_checkpoint_model

    data = tmp_path_factory.getbasetemp() / "builtin"
    model = {"backbone": "mamba", **TINY_MODEL, "mamba": {"d_state": 8, "d_conv": 3, "fused": False}}

    def config(out, steps):
        cfg = tiny_config(out, data, backbone="mamba", steps=steps, checkpoint_every=2, validate_at_start=False)
        cfg.model = dict(model)
        return cfg

    Trainer(config(tmp_path / "new", 2), progress=False).run()
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    (step,) = ckpt.candidates(tmp_path / "old" / "checkpoints")
    old_state = _rewrite_in_old_layout(step)
    assert "mamba_d_state" in old_state["model_config_full"] and "fused_scan" in old_state["run_config"]["model"]

    # loads (dfnet4-enhance's path) into the same model, which enhances identically
    (new_model, _), (old_model, _) = (load_checkpoint_model(tmp_path / run, log=lambda m: None)
                                      for run in ("new", "old"))
    assert old_model.config == new_model.config and old_model.config.mamba.d_state == 8
    x = 0.1 * np.random.default_rng(0).standard_normal((1, 480 * 20)).astype(np.float32)
    np.testing.assert_array_equal(enhance_array(old_model, x), enhance_array(new_model, x))

    # resumes: the same steps, and the new checkpoint stores the nested form
    runs = {run: Trainer(config(tmp_path / run, 4), resume=True, progress=False).run() for run in ("new", "old")}
    assert runs["old"]["step"] == 4 and runs["old"]["losses"] == runs["new"]["losses"]
    latest, state = ckpt.find_latest_valid(tmp_path / "old" / "checkpoints", lambda m: None)
    assert state["step"] == 4 and state["model_config_full"]["mamba"]["d_state"] == 8
    assert "mamba_d_state" not in state["model_config_full"]


def test_an_old_layout_checkpoint_resumes_through_the_cli(tmp_path, tmp_path_factory, capsys):
    """--resume with only --out: the model and run config come from the old checkpoint; a fused switch
    given now (in either spelling) still applies."""
    data = tmp_path_factory.getbasetemp() / "builtin"
    cfg = tiny_config(tmp_path / "run", data, backbone="gru", steps=2, validate_at_start=False)
    cfg.model = {"backbone": "gru", **TINY_MODEL, "gru": {"fused": False}}
    Trainer(cfg, progress=False).run()
    (step,) = ckpt.candidates(tmp_path / "run" / "checkpoints")
    _rewrite_in_old_layout(step)
    assert train_cli.main(["--out", str(tmp_path / "run"), "--resume", "--steps", "3", "--no-fused-gru",
                           "--no-progress"]) == 0
    _, state = ckpt.find_latest_valid(tmp_path / "run" / "checkpoints", lambda m: None)
    assert state["step"] == 3 and state["model_config"]["gru"] == {"fused": False}
    assert "ignored" not in capsys.readouterr().err  # nothing of the model was changed by this run


def test_an_old_layout_model_file_loads_with_either_spelling_of_an_override(tmp_path):
    """A single-file checkpoint (dfnet4.model.checkpoint) whose stored config is in the old layout."""
    from mlx.utils import tree_flatten

    from dfnet4.model import DfNet4, checkpoint

    mx.random.seed(3)
    model = DfNet4(DfNet4Config.from_dict({"backbone": "attention", **TINY_MODEL, "attention": {"window": 4}}))
    checkpoint.save(model, tmp_path / "new.safetensors")
    weights, meta = mx.load(str(tmp_path / "new.safetensors"), return_metadata=True)
    stored = json.loads(meta[checkpoint.CONFIG_KEY])
    assert stored["attention"]["window"] == 4  # written nested
    meta[checkpoint.CONFIG_KEY] = json.dumps(old_layout(stored))
    mx.save_safetensors(str(tmp_path / "old.safetensors"), weights, metadata=meta)

    loaded, _ = checkpoint.load(tmp_path / "old.safetensors")
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(tree_flatten(loaded.parameters()), tree_flatten(model.parameters())):
        assert mx.array_equal(a, b).item(), name
    for override in ({"fused_gru": False}, {"gru": {"fused": False}}):  # a run-time choice, either spelling
        assert checkpoint.load(tmp_path / "old.safetensors", **override)[0].config.gru.fused is False
