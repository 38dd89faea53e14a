"""One Mamba block as a function of its parameters, and its memory-lean backward for the fused ops.

Math, per block (rows = batch*time):
    hn = rmsnorm(h) ; x, z = hn @ W_x^T, hn @ W_z^T ; xc = silu(causal_conv(x, window))
    dt, B, C = split(xc @ W_xproj^T) ; delta = dt @ W_dt^T ; A = -exp(A_log)
    y = selective_scan(xc, delta, A, B, C, D, z, dt_bias, softplus, h0=ssm) ; out = h + y @ W_out^T

`block_forward` runs it with any pair of ops (the reference block is MLX's autodiff of it over
dfnet4.reference). `recomputing_block` runs it with the fused ops under a hand-written backward:
autodiff would keep every intermediate of every block (normed input, x, z, conv output, delta, scan
output and checkpoints) from the forward until the backward, and MLX's deepest-first schedule
holds them longer still. Here the forward keeps only what the backward starts from; each block's
backward waits for the block's output (mx.depends, so MLX cannot run the recompute early),
recomputes the block's forward from there, and runs the backward op by op, forcing each weight
gradient to be formed as soon as its inputs exist (mx.checkpoint does neither, and saves little
here). `keep_in_proj=True` (the backbone's default) is mamba-ssm's mamba_inner_fn scheme: the
forward keeps in_proj's output and the scan's checkpoints (the state entering every 16 steps), and
with ops that have the checkpointed scan pair (dfnet4.ops) the scan's backward kernel re-forms the
scan's output as it goes (mamba-ssm's recompute_out_z): only the conv and the two small
projections run twice. `keep_in_proj=False` keeps the block input alone (about 1/7 of the memory
per block) for one more forward of in_proj and of the scan (docs/model.md "Speed").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mlx.core as mx

PARAMS = ("norm", "in_proj", "conv_weight", "conv_bias", "x_proj", "dt_proj", "dt_bias", "A_log", "D", "out_proj")


@dataclass(frozen=True)
class BlockSizes:
    d_inner: int
    dt_rank: int
    d_state: int
    eps: float  # the RMSNorm's


@dataclass(frozen=True)
class BlockOps:
    causal_conv1d: Callable
    selective_scan: Callable
    rms_norm: Callable
    # Optional (dfnet4.ops has them): the scan's forward that also returns its checkpoints, and its
    # backward from them, which also returns the scan's output. Without them the keep_in_proj
    # backward runs the scan's forward again under mx.vjp.
    selective_scan_checkpointed: Callable | None = None
    selective_scan_backward: Callable | None = None


def _rows(a: mx.array) -> mx.array:
    # Projections run on (batch*time, features) rows: on 3-D inputs MLX's matmul VJP forms one
    # weight gradient per batch entry and sums them (a (batch, in, out) temporary per weight).
    return a.reshape(-1, a.shape[-1])


def _scan(ops: BlockOps, xc, delta, A, B, C, D, z, dt_bias, ssm):
    return ops.selective_scan(xc, delta, A, B, C, h0=ssm, return_last_state=True, **_scan_options(D, z, dt_bias))


def _scan_options(D, z, dt_bias) -> dict:
    """The block's scan options, as the scan, its checkpointed forward and its backward take them."""
    return {"D": D, "z": z, "delta_bias": dt_bias, "delta_softplus": True}


def _conv(ops: BlockOps, x, weight, bias, window):
    return ops.causal_conv1d(x, weight, bias, window=window, activation="silu", return_window=True)


def _norm(ops: BlockOps, p: dict, h: mx.array, sizes: BlockSizes) -> mx.array:
    return ops.rms_norm(h, p["norm"], sizes.eps)


def _in_proj(ops: BlockOps, p: dict, h: mx.array, sizes: BlockSizes):
    """(hn rows, x, z): the normed input and in_proj's two halves."""
    bt, di = h.shape[:2], sizes.d_inner
    hn = _rows(_norm(ops, p, h, sizes))
    # in_proj as two GEMMs on its weight's halves: autodiff of a split of one product would make
    # each half's gradient a full-width scatter (two extra (batch, time, 2*d_inner) arrays)
    w = p["in_proj"]
    return hn, (hn @ w[:di].T).reshape(*bt, di), (hn @ w[di:].T).reshape(*bt, di)


def _scan_inputs(ops: BlockOps, p: dict, x: mx.array, window, sizes: BlockSizes):
    """From in_proj's x to the scan: (xc, dt rows, B, C, delta, A, new_window)."""
    bt = x.shape[:2]
    di, r, n = sizes.d_inner, sizes.dt_rank, sizes.d_state
    xc, new_window = _conv(ops, x, p["conv_weight"], p["conv_bias"], window)
    dt, B, C = mx.split(_rows(xc) @ p["x_proj"].T, [r, r + n], axis=-1)
    delta = (dt @ p["dt_proj"].T).reshape(*bt, di)
    A = -mx.exp(p["A_log"])
    return xc, dt, B.reshape(*bt, n), C.reshape(*bt, n), delta, A, new_window


def _forward(ops: BlockOps, p: dict, h: mx.array, window, ssm, sizes: BlockSizes, checkpoints: bool = False):
    """(out, new_window, new_ssm, x, z), and with `checkpoints` the scan's checkpoints after them:
    the block, in_proj's output and what the scan's backward needs."""
    _, x, z = _in_proj(ops, p, h, sizes)
    xc, _, B, C, delta, A, new_window = _scan_inputs(ops, p, x, window, sizes)
    if checkpoints:
        y, new_ssm, *kept = ops.selective_scan_checkpointed(xc, delta, A, B, C, h0=ssm,
                                                            **_scan_options(p["D"], z, p["dt_bias"]))
    else:
        (y, new_ssm), kept = _scan(ops, xc, delta, A, B, C, p["D"], z, p["dt_bias"], ssm), []
    # addmm: the residual add rides in the GEMM (its beta = 1) instead of a separate pass
    out = mx.addmm(_rows(h), _rows(y), p["out_proj"].T).reshape(h.shape)
    return (out, new_window, new_ssm, x, z, *kept)


def _scan_vjp(ops: BlockOps, xc, delta, A, B, C, p, z, ssm, checkpoints, d_y, d_ssm):
    """(y, gradients in _scan's argument order): from the kept checkpoints when given, else by
    running the scan's forward again under mx.vjp."""
    if checkpoints is None:
        (y, _), grads = mx.vjp(lambda *a: _scan(ops, *a), [xc, delta, A, B, C, p["D"], z, p["dt_bias"], ssm],
                               [d_y, d_ssm])
        return y, grads
    y, g = ops.selective_scan_backward(xc, delta, A, B, C, checkpoints, d_y, d_ssm,
                                       **_scan_options(p["D"], z, p["dt_bias"]))
    return y, [g[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")]


def block_forward(ops: BlockOps, p: dict, h: mx.array, window, ssm, sizes: BlockSizes):
    """(out, new_window, new_ssm); window/ssm None mean a fresh sequence (zeros)."""
    return _forward(ops, p, h, window, ssm, sizes)[:3]


def _backward(ops: BlockOps, p: dict, h, window, ssm, out, kept, d_out, d_window, d_ssm, sizes: BlockSizes):
    """Gradients for (p, h, window, ssm), recomputing the block's forward once d_out exists; from
    in_proj's output (x, z) when `kept` holds it (and the scan's checkpoints when it holds three),
    else from h."""
    bt, di = h.shape[:2], sizes.d_inner
    # after the forward's output too: a loss linear in it (a sum) gives a d_out that exists from
    # the start, and the recompute would then run alongside the forward
    hn = checkpoints = None
    if kept:
        x, z, *rest = mx.depends(list(kept), [d_out, out])
        checkpoints = rest[0] if rest else None
    else:
        hn, x, z = _in_proj(ops, p, mx.depends(h, [d_out, out]), sizes)
    xc, dt, B, C, delta, A, _ = _scan_inputs(ops, p, x, window, sizes)
    d_out_rows = _rows(d_out)
    d_y = (d_out_rows @ p["out_proj"]).reshape(*bt, di)
    y, scan_grads = _scan_vjp(ops, xc, delta, A, B, C, p, z, ssm, checkpoints, d_y, d_ssm)
    d_xc, d_delta, d_A, d_B, d_C, d_D, d_z, d_dt_bias, d_ssm_in = scan_grads
    g = {"out_proj": d_out_rows.T @ _rows(y), "D": d_D, "dt_bias": d_dt_bias, "A_log": d_A * A}
    d_delta = _rows(d_delta)
    g["dt_proj"] = d_delta.T @ dt
    d_xdbl = mx.concatenate([d_delta @ p["dt_proj"], _rows(d_B), _rows(d_C)], axis=-1)
    g["x_proj"] = d_xdbl.T @ _rows(xc)
    d_xc = mx.addmm(_rows(d_xc), d_xdbl, p["x_proj"]).reshape(d_xc.shape)  # into the scan's d_xc
    # MLX runs a graph deepest-first: a weight gradient, one step from the final outputs, would wait
    # until the whole backward chain below it had run, holding its inputs (y, xc, hn, ...) all the
    # while. Making the chain depend on the weight gradients frees those inputs here instead.
    d_xc = mx.depends(d_xc, [g["out_proj"], g["dt_proj"], g["x_proj"]])
    # hn and x are the recompute's, held through the scan's backward: recomputing them here (a norm
    # and half of in_proj) saved 5 MiB of the 2-block backbone's 187 MiB peak and cost ~3 % of the
    # Mamba model's step (docs/model.md "Speed"). With x kept, only the norm is redone.
    if hn is None:
        hn = _rows(_norm(ops, p, mx.depends(h, d_xc), sizes))
    w = p["in_proj"]
    _, (d_x, g["conv_weight"], g["conv_bias"], d_window_in) = mx.vjp(
        lambda *a: _conv(ops, *a), [x, p["conv_weight"], p["conv_bias"], window], [d_xc, d_window]
    )
    d_x, d_z = _rows(d_x), _rows(d_z)
    g["in_proj"] = mx.concatenate([d_x.T @ hn, d_z.T @ hn], axis=0)
    d_hn = mx.addmm(d_x @ w[:di], d_z, w[di:]).reshape(h.shape)
    _, (d_h_norm, g["norm"]) = mx.vjp(
        lambda a, weight: ops.rms_norm(a, weight, sizes.eps), [h, p["norm"]], [d_hn]
    )
    d_h = mx.depends(d_out + d_h_norm, [g["in_proj"], g["norm"], g["conv_weight"]])
    return {k: g[k] for k in p}, d_h, d_window_in, d_ssm_in


def recomputing_block(ops: BlockOps, sizes: BlockSizes, keep_in_proj: bool = True):
    """f(params, h, window, ssm) -> (out, new_window, new_ssm), differentiable, storing the block's
    input and, with `keep_in_proj`, in_proj's output (x, z: 4 input-sized arrays at expand 2) and,
    when `ops` has the checkpointed scan pair, the scan's checkpoints (2 more at expand 2, state 16:
    one state per channel every 16 steps); the backward then skips recomputing in_proj, the block's
    largest GEMM, and the scan's forward (mamba-ssm's mamba_inner_fn keeps the same). Without
    `keep_in_proj` only the input is stored.

    params: a dict with the keys in PARAMS (Linear weights as nn.Linear stores them, (out, in));
    window (batch, d_conv - 1, d_inner) and ssm (batch, d_inner, d_state) are the conv and scan
    states, arrays (zeros for a fresh sequence: a custom function takes no None).
    """

    checkpoints = keep_in_proj and ops.selective_scan_backward is not None

    @mx.custom_function
    def block(p, h, window, ssm):
        out = _forward(ops, p, h, window, ssm, sizes, checkpoints)
        return out if keep_in_proj else out[:3]

    @block.vjp
    def block_vjp(primals, cotangents, outputs):
        # x, z (and the checkpoints) are outputs only to be kept for the backward: their cotangents
        # are unused zeros
        return _backward(ops, *primals, outputs[0], outputs[3:], *cotangents[:3], sizes)

    def run(p, h, window, ssm):
        return block(p, h, window, ssm)[:3]

    return run
