"""Transplant by distillation: teach a new backbone to do what the source model's temporal parts did.

Stage 1 (per part): the teacher (e.g. DeepFilterNet3) runs on the noisy batch; the input and output
of each of its temporal parts (encoder embedding, ERB-decoder and DF-decoder backbones) are
recorded, and each student part is trained, alone, to map the teacher part's input to its output
(relative MSE). Only the three parts train. Needs no clean speech.

Stage 2 (whole model): the student's enhanced spectrum is trained towards the teacher's with the
run's DeepFilterNet loss (spectral + multi-resolution + local SNR, the teacher's output standing in
for the clean speech), optionally mixed with the ordinary clean-target loss (`clean_weight`).
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn

from dfnet4 import dsp
from dfnet4.train.init import PARTS, InitConfig
from dfnet4.train.losses import LossConfig, total_loss

def submodule(model: nn.Module, path: str) -> nn.Module:
    for key in path.split("."):
        model = model[key] if isinstance(model, dict) else getattr(model, key)
    return model


class _Recording(nn.Module):
    """Wraps a temporal part and keeps the (input, output) of its last call."""

    def __init__(self, inner: nn.Module, store: dict, name: str):
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_name", name)

    def __call__(self, x, state=None):
        y, state = self.inner(x, state)
        self._store[self._name] = (x, y)
        return y, state


def teacher_outputs(teacher: nn.Module, noisy_spec: mx.array) -> tuple[mx.array, dict, dict]:
    """(enhanced spectrum, aux, {part: (input, output)}) of the teacher, all without gradient."""
    store: dict = {}
    originals = {}
    for path in PARTS:
        parent_path, _, leaf = path.rpartition(".")
        parent = submodule(teacher, parent_path)
        originals[path] = (parent, leaf, getattr(parent, leaf))
        setattr(parent, leaf, _Recording(getattr(parent, leaf), store, path))
    try:
        enh, aux = teacher(noisy_spec)
    finally:
        for parent, leaf, inner in originals.values():
            setattr(parent, leaf, inner)
    parts = {p: (mx.stop_gradient(x), mx.stop_gradient(y)) for p, (x, y) in store.items()}
    return mx.stop_gradient(enh), {k: mx.stop_gradient(v) for k, v in aux.items()}, parts


def part_losses(student: nn.Module, parts: dict, weights: dict) -> tuple[mx.array, dict]:
    """Stage 1: the weighted sum of each student part's relative MSE against the teacher part."""
    losses = {}
    for path, (x, y) in parts.items():
        if not weights.get(path, 0.0):
            continue
        y_hat, _ = submodule(student, path)(x)
        losses[path] = mx.mean(mx.square(y_hat - y)) / (mx.mean(mx.square(y)) + 1e-8)
    total = sum(weights[p] * v for p, v in losses.items())
    return total, losses


def whole_model_loss(student: nn.Module, noisy: mx.array, noisy_spec: mx.array, clean: mx.array | None,
                     teacher_enh: mx.array, loss_cfg: LossConfig, clean_weight: float) -> tuple[mx.array, dict]:
    """Stage 2: the run's loss against the teacher's enhanced signal, mixed with the clean-target loss.
    `noisy_spec`: the STFT of `noisy`, which the teacher was given too."""
    n, hop = student.config.fft_size, student.config.hop_size
    enh_spec, aux = student(noisy_spec)
    enh_audio = dsp.istft(enh_spec, noisy.shape[-1], n, hop)
    teacher_audio = dsp.istft(teacher_enh, noisy.shape[-1], n, hop)
    loss_t, parts = total_loss(enh_spec, teacher_enh, noisy_spec, enh_audio, teacher_audio, aux.get("lsnr"), loss_cfg)
    parts = {f"teacher_{k}": v for k, v in parts.items()}
    if clean_weight > 0:
        if clean is None:
            raise ValueError("distill.clean_weight > 0 needs clean speech in the batch")
        clean_spec = dsp.stft(clean, n, hop)
        loss_c, cparts = total_loss(enh_spec, clean_spec, noisy_spec, enh_audio, clean, aux.get("lsnr"), loss_cfg)
        parts.update({f"clean_{k}": v for k, v in cparts.items()})
        return (1 - clean_weight) * loss_t + clean_weight * loss_c, parts
    return loss_t, parts


def set_trainable(model: nn.Module, allowed: Callable[[str], bool]) -> None:
    """Make exactly the parameters whose full name passes `allowed` trainable (BatchNorm running
    statistics stay frozen whatever `allowed` says)."""
    model.freeze()
    for path, module in model.named_modules():
        keys = [k for k, v in module.items() if isinstance(v, mx.array)
                and allowed(f"{path}.{k}" if path else k)
                and not (isinstance(module, nn.BatchNorm) and k in ("running_mean", "running_var"))]
        if keys:
            module.unfreeze(keys=keys, recurse=False)


def stage_trainable(stage: int, cfg: InitConfig) -> Callable[[str], bool]:
    """Stage 1 trains the temporal parts only; stage 2 the whole model or the parts (stage2_trainable)."""
    def in_parts(name: str) -> bool:
        return any(name.startswith(p + ".") for p in PARTS)

    if stage == 1 or cfg.stage2_trainable == "parts":
        return in_parts
    return lambda name: True


class Distiller:
    """The loss of each stage for (student, teacher); the caller owns optimizers, data and the loop."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: InitConfig, loss_cfg: LossConfig):
        self.student, self.teacher, self.cfg, self.loss_cfg = student, teacher, cfg, loss_cfg
        teacher.eval()
        teacher.freeze()

    def loss_fn(self, stage: int):
        """fn(model, clean, noisy) -> (loss, parts) for nn.value_and_grad."""
        cfg, loss_cfg = self.cfg, self.loss_cfg

        def stage1(model, clean, noisy):
            c = model.config
            noisy_spec = dsp.stft(noisy, c.fft_size, c.hop_size)
            _, _, parts = teacher_outputs(self.teacher, noisy_spec)
            total, losses = part_losses(model, parts, cfg.weights_by_path())
            return total, {f"part_{p}": v for p, v in losses.items()}

        def stage2(model, clean, noisy):
            c = model.config
            noisy_spec = dsp.stft(noisy, c.fft_size, c.hop_size)  # one STFT for teacher and student
            teacher_enh, _, _ = teacher_outputs(self.teacher, noisy_spec)
            return whole_model_loss(model, noisy, noisy_spec, clean, teacher_enh, loss_cfg, cfg.clean_weight)

        return stage1 if stage == 1 else stage2
