"""The steps that get timed. Each builder returns `step()`, which builds the graph and returns every
array that must be computed; `timing.measure` evaluates them. Inputs are created (and evaluated) by
the caller, outside the timed region.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

Step = Callable[[], Any]
LossFn = Callable[[nn.Module, dict], mx.array]  # (model, batch) -> scalar, see objective.py


def backbone_forward(backbone: nn.Module, x: mx.array) -> Step:
    def step():
        y, _ = backbone(x)
        return y

    return step


def backbone_fwd_bwd(backbone: nn.Module, x: mx.array) -> Step:
    """Loss mean(y^2); gradients w.r.t. every trainable parameter and w.r.t. the input."""

    def loss(params, x):
        backbone.update(params)
        y, _ = backbone(x)
        return mx.mean(mx.square(y))

    value_and_grad = mx.value_and_grad(loss, argnums=(0, 1))
    params = backbone.trainable_parameters()

    def step():
        return value_and_grad(params, x)

    return step


def model_forward(model: nn.Module, batch: dict) -> Step:
    noisy = batch["noisy_spec"]

    def step():
        enh, aux = model(noisy)
        return enh, aux

    return step


def model_fwd_bwd(model: nn.Module, batch: dict, loss_fn: LossFn) -> Step:
    """Uncompiled value_and_grad of the loss w.r.t. the model's parameters (no optimizer update)."""

    def loss(batch):
        return loss_fn(model, batch)

    value_and_grad = nn.value_and_grad(model, loss)

    def step():
        return value_and_grad(batch)

    return step


def train_step(
    model: nn.Module, batch: dict, loss_fn: LossFn, lr: float = 5e-4, weight_decay: float = 0.05, clip: float = 1.0,
    compiled: bool = True,
) -> Step:
    """One full training step as dfnet4.train runs it: loss, gradients, gradient-norm clipping,
    AdamW update, all under one mx.compile over model, optimizer and RNG state (compiled=False: the
    same step eagerly, as dfnet4-train runs it on the CPU, where its `compile = "auto"` is off)."""
    optimizer = optim.AdamW(learning_rate=lr, weight_decay=weight_decay)
    optimizer.init(model.trainable_parameters())

    def loss(batch):
        return loss_fn(model, batch)

    value_and_grad = nn.value_and_grad(model, loss)
    state = [model.state, optimizer.state, mx.random.state]

    def update(batch):
        value, grads = value_and_grad(batch)
        grads, _ = optim.clip_grad_norm(grads, clip)
        optimizer.update(model, grads)
        return value

    run = partial(mx.compile, inputs=state, outputs=state)(update) if compiled else update

    def step():
        value = run(batch)
        return value, state  # the updated parameters and AdamW moments must be computed too

    return step
