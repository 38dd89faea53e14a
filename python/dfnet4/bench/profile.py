"""Where the time of a DfNet4 training step goes: every layer, the DSP, the loss and the optimizer
timed on their own, forward and forward+backward, at the shapes the step gives them.

MLX has no CPU profiler, and lazy evaluation fuses nothing on the CPU without mx.compile, so the
sum of separately timed parts is a fair picture of the uncompiled step. Layers are found by class
(`PROFILED_CLASSES`); one forward of the whole model records each one's inputs (the class of
every such module is swapped for a recording subclass during that forward only), then each is
timed alone: forward = the call; forward+backward = mx.vjp of the call w.r.t. its parameters and
its array inputs, with a random cotangent for every array output. Nested layers (a conv inside a
conv block, a grouped linear inside a backbone) are timed too; the table marks them so they are
not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from dfnet4.bench.timing import measure

# layer classes timed on their own (class name -> label of its kind in the summary)
PROFILED_CLASSES = {
    "ConvNormAct": "conv blocks (conv + BatchNorm + activation)",
    "GroupedConv": "conv GEMM + gather",
    "DepthwiseTransposedConv": "transposed conv",
    "BatchNorm": "BatchNorm (+ ReLU)",
    "SqueezedGRU_S": "temporal backbones (gru)",
    "SqueezedMamba": "temporal backbones (mamba)",
    "SqueezedAttention": "temporal backbones (attention)",
    "GroupedLinear": "grouped linears",
    "Linear": "linear (lsnr head)",
}
NO_INPUT_GRAD = ("enc.erb_conv0", "enc.df_conv0")  # they read the features: no gradient to their input


@dataclass
class Call:
    name: str
    kind: str
    module: nn.Module
    args: tuple
    kwargs: dict


def _arrays(tree) -> list[mx.array]:
    return [v for _, v in tree_flatten(tree) if isinstance(v, mx.array)]


def record_calls(model: nn.Module, run: Callable[[], Any]) -> list[Call]:
    """Run `run()` once with every profiled module's class swapped for a recording subclass."""
    calls: list[Call] = []
    swapped: list[tuple[nn.Module, type]] = []
    for name, module in model.named_modules():
        cls = type(module)
        if cls.__name__ not in PROFILED_CLASSES:
            continue

        def recording_call(self, *args, _name=name, _cls=cls, **kwargs):
            if not any(c.module is self for c in calls):
                calls.append(Call(_name, _cls.__name__, self, args, kwargs))
            return _cls.__call__(self, *args, **kwargs)

        module.__class__ = type(f"Recording{cls.__name__}", (cls,), {"__call__": recording_call})
        swapped.append((module, cls))
    try:
        mx.eval(run())
    finally:
        for module, cls in swapped:
            module.__class__ = cls
    for c in calls:  # the recorded inputs are evaluated arrays from now on
        mx.eval(_arrays((c.args, c.kwargs)))
    return calls


def _call_steps(call: Call) -> tuple[Callable, Callable]:
    """(forward step, forward+backward step) of one recorded call."""
    module = call.module
    array_pos = [i for i, a in enumerate(call.args) if isinstance(a, mx.array)]
    names, values = zip(*tree_flatten(module.trainable_parameters())) if module.trainable_parameters() else ((), ())
    arrays = [call.args[i] for i in array_pos]
    n_params = len(values)

    def run(*primals):
        module.update(tree_unflatten(list(zip(names, primals[:n_params]))))
        args = list(call.args)
        for i, a in zip(array_pos, primals[n_params:]):
            args[i] = a
        return _arrays(module(*args, **call.kwargs))

    grad_inputs = call.name not in NO_INPUT_GRAD
    fixed = [] if grad_inputs else arrays
    diff = list(values) + ([] if not grad_inputs else arrays)
    outputs = run(*values, *arrays)
    cotangents = [mx.random.normal(o.shape).astype(o.dtype) for o in outputs]
    mx.eval(cotangents)

    def forward():
        return run(*values, *arrays)

    def fwd_bwd():
        return mx.vjp(lambda *d: run(*d, *fixed), diff, cotangents)

    return forward, fwd_bwd


def _fn_steps(fn: Callable, inputs: list[mx.array], grad_argnums: tuple[int, ...]) -> tuple[Callable, Callable]:
    """(forward, forward+backward) of a function of arrays; the backward w.r.t. `grad_argnums`."""
    outputs = _arrays(fn(*inputs))
    cotangents = [mx.random.normal(o.shape).astype(o.dtype) for o in outputs]
    mx.eval(cotangents)

    def of(*diff):
        full = list(inputs)
        for k, i in enumerate(grad_argnums):
            full[i] = diff[k]
        return _arrays(fn(*full))

    def forward():
        return _arrays(fn(*inputs))

    def fwd_bwd():
        if not grad_argnums:
            return forward()
        return mx.vjp(of, [inputs[i] for i in grad_argnums], cotangents)

    return forward, fwd_bwd


def dsp_and_loss_parts(model: nn.Module, batch: dict, enh_spec: mx.array, lsnr: mx.array,
                       loss_fused: bool | None = None) -> list[tuple]:
    """(name, kind, forward, fwd_bwd) for the parts of the step outside the network's layers."""
    from dfnet4 import dsp
    from dfnet4.train.losses import LossConfig, lsnr_loss, multires_stft_loss, spectral_loss

    cfg, lcfg = model.config, LossConfig()
    n, hop = cfg.fft_size, cfg.hop_size
    clean, noisy = batch["clean_audio"], batch["noisy_audio"]
    length = clean.shape[-1]
    clean_spec, noisy_spec = dsp.stft(clean, n, hop), dsp.stft(noisy, n, hop)
    enh_audio = dsp.istft(enh_spec, length, n, hop)
    mx.eval(clean_spec, noisy_spec, enh_audio)
    mask, coefs = mx.random.uniform(shape=enh_spec.shape[:2] + (cfg.nb_erb,)), mx.random.normal(
        enh_spec.shape[:2] + (cfg.nb_df, cfg.df_order, 2))
    mx.eval(mask, coefs)
    parts = [
        ("STFT of clean and noisy audio", "STFT / iSTFT", lambda c, x: (dsp.stft(c, n, hop), dsp.stft(x, n, hop)),
         [clean, noisy], ()),
        ("features (ERB dB + norms, unit norm)", "features", lambda s: model.features(s)[:2], [noisy_spec], ()),
        ("deep filter + ERB mask (model._combine)", "deep filter + ERB mask",
         lambda m, c: model._combine(noisy_spec, noisy_spec, m, c), [mask, coefs], (0, 1)),
        ("iSTFT of the enhanced spectrum", "STFT / iSTFT", lambda e: dsp.istft(e, length, n, hop), [enh_spec], (0,)),
        ("loss: spectral (960-point)", "loss", lambda e: spectral_loss(e, clean_spec, lcfg, loss_fused), [enh_spec],
         (0,)),
    ]
    for size in lcfg.mr_fft_sizes:
        one = LossConfig(mr_fft_sizes=[size])
        parts.append((f"loss: multi-resolution STFT, {size}-point", "loss",
                      lambda a, one=one: multires_stft_loss(a, clean, one, loss_fused), [enh_audio], (0,)))
    parts.append(("loss: local SNR (target + MSE)", "loss",
                  lambda p: lsnr_loss(p, clean_spec, noisy_spec, lcfg),
                  [lsnr], (0,)))
    return [(name, kind, *_fn_steps(fn, inputs, argnums)) for name, kind, fn, inputs, argnums in parts]


def optimizer_part(model: nn.Module, lr: float = 5e-4, weight_decay: float = 0.05, clip: float = 1.0) -> tuple:
    """Gradient-norm clipping + AdamW update on random gradients of the model's shapes (no backward)."""
    opt = optim.AdamW(learning_rate=lr, weight_decay=weight_decay)
    params = model.trainable_parameters()
    opt.init(params)
    grads = tree_map(lambda p: 1e-3 * mx.random.normal(p.shape), params)
    mx.eval(grads, opt.state)

    def step():
        g, _ = optim.clip_grad_norm(grads, clip)
        new = opt.apply_gradients(g, params)
        return new, opt.state

    return ("clip_grad_norm + AdamW update", "optimizer", step, step)


def profile(model: nn.Module, batch: dict, loss_fn: Callable, *, warmup: int = 1, repeats: int = 3,
            loss_fused: bool | None = None, log: Callable[[str], None] = print) -> dict:
    """Time every part of one training step of `model` (train mode) on `batch`; see the module doc.
    `loss_fused`: the loss parts' implementation (loss_fn brings its own)."""
    model.train()
    spec = batch["noisy_spec"]
    captured: dict = {}

    def forward():
        enh, aux = model(spec)
        captured.update(enh=enh, lsnr=aux["lsnr"])
        return enh, aux

    calls = record_calls(model, forward)
    enh, lsnr = captured["enh"], captured["lsnr"]
    mx.eval(enh, lsnr)
    rows = []

    def timed(name: str, kind: str, nested: bool, fwd: Callable, fwd_bwd: Callable, backward: bool = True):
        f = measure(fwd, warmup=warmup, repeats=repeats).median_ms
        fb = measure(fwd_bwd, warmup=warmup, repeats=repeats).median_ms if backward else None
        rows.append({"name": name, "kind": kind, "nested": nested, "forward_ms": f, "fwd_bwd_ms": fb})
        log(f"  {name:48s} fwd {f:8.1f} ms" + (f"   fwd+bwd {fb:8.1f} ms" if fb is not None else ""))

    names = {c.name for c in calls}
    for call in calls:
        # inside another timed layer (a conv in its conv block, a linear in its backbone)?
        parts = call.name.split(".")
        nested = any(".".join(parts[:k]) in names for k in range(1, len(parts)))
        kind = PROFILED_CLASSES[call.kind]
        timed(call.name, f"  of which {kind}" if nested else kind, nested, *_call_steps(call))
    for name, kind, fwd, fwd_bwd in dsp_and_loss_parts(model, batch, enh, lsnr, loss_fused):
        timed(name, kind, False, fwd, fwd_bwd, backward=fwd is not fwd_bwd)
    name, kind, step, _ = optimizer_part(model)
    timed(name, kind, False, step, step, backward=False)

    def whole_fwd():
        return model(spec)

    value_and_grad = nn.value_and_grad(model, lambda b: loss_fn(model, b))
    totals = {
        "model_forward_ms": measure(whole_fwd, warmup=warmup, repeats=repeats).median_ms,
        "model_fwd_bwd_ms": measure(lambda: value_and_grad(batch), warmup=warmup, repeats=repeats).median_ms,
    }
    log(f"  whole model forward {totals['model_forward_ms']:.1f} ms, "
        f"loss forward+backward (uncompiled) {totals['model_fwd_bwd_ms']:.1f} ms")
    return {"rows": rows, "totals": totals}


def summary(result: dict) -> list[dict]:
    """Per kind: summed forward and forward+backward time (nested rows summed under their own kind)."""
    kinds: dict[str, dict] = {}
    for row in result["rows"]:
        k = kinds.setdefault(row["kind"], {"kind": row["kind"], "forward_ms": 0.0, "fwd_bwd_ms": 0.0,
                                           "nested": row["nested"]})
        k["forward_ms"] += row["forward_ms"]
        k["fwd_bwd_ms"] += row["fwd_bwd_ms"] if row["fwd_bwd_ms"] is not None else row["forward_ms"]
    return list(kinds.values())


def markdown(result: dict, title: str, header: list[str] = ()) -> str:
    t = result["totals"]
    lines = [f"# {title}", "", *header, "", "| part | forward (ms) | forward+backward (ms) |", "|---|---|---|"]
    for row in result["rows"]:
        fb = "—" if row["fwd_bwd_ms"] is None else f"{row['fwd_bwd_ms']:.1f}"
        name = f"&nbsp;&nbsp;{row['name']}" if row["nested"] else row["name"]
        lines.append(f"| {name} | {row['forward_ms']:.1f} | {fb} |")
    lines += ["", "Summed by kind (rows marked 'of which' are inside the conv blocks, not added again):", "",
              "| kind | forward (ms) | forward+backward (ms) | share of the summed fwd+bwd |", "|---|---|---|---|"]
    kinds = summary(result)
    total = sum(k["fwd_bwd_ms"] for k in kinds if not k["nested"])
    for k in kinds:
        share = "" if k["nested"] else f"{100 * k['fwd_bwd_ms'] / total:.0f} %"
        lines.append(f"| {k['kind']} | {k['forward_ms']:.1f} | {k['fwd_bwd_ms']:.1f} | {share} |")
    lines += ["", f"Sum of the top-level parts: {total:.0f} ms forward+backward (the optimizer's forward only). "
              f"Whole model, measured in the same run: forward {t['model_forward_ms']:.0f} ms, "
              f"value_and_grad of the training loss (uncompiled) {t['model_fwd_bwd_ms']:.0f} ms."]
    return "\n".join(lines) + "\n"
