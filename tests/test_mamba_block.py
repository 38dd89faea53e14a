"""The fused Mamba block's hand-written, recomputing backward (backbones/mamba_block.py) against
MLX's autodiff of the same block on the same fused ops: every output, every gradient."""

import dataclasses

import mlx.core as mx
import pytest

import dfnet4._extension
from dfnet4.backbones.mamba import MambaBlock, MambaCore, _ops
from dfnet4.backbones.mamba_block import PARAMS, block_forward, recomputing_block

pytestmark = pytest.mark.skipif(not dfnet4._extension.available(), reason="needs the compiled extension")


def make_block(dims, d_state, d_conv, expand, seed):
    mx.random.seed(seed)
    blk = MambaBlock(dims, d_state, d_conv, expand, fused=True)
    # move every parameter off its initial value (D = 1, structured A_log) so each gradient term counts
    blk.update({k: v + 0.1 * mx.random.normal(v.shape) for k, v in blk.parameters().items() if isinstance(v, mx.array)})
    for sub in ("norm", "in_proj", "x_proj", "dt_proj", "out_proj"):
        mod = getattr(blk, sub)
        mod.weight = mod.weight + 0.1 * mx.random.normal(mod.weight.shape)
    mx.eval(blk.parameters())
    return blk


def primals(blk, batch, time, seed):
    key = mx.random.key(seed)
    k = mx.random.split(key, 3)
    h = mx.random.normal((batch, time, blk.norm.weight.shape[0]), key=k[0])
    window = mx.random.normal((batch, blk.d_conv - 1, blk.d_inner), key=k[1])
    ssm = 0.5 * mx.random.normal((batch, blk.d_inner, blk.d_state), key=k[2])
    return [blk._params()[name] for name in PARAMS] + [h, window, ssm]


def run_vjp(fn, blk, args, cotangents):
    def flat(*a):
        return fn(dict(zip(PARAMS, a[: len(PARAMS)])), *a[len(PARAMS) :])

    return mx.vjp(flat, args, cotangents)


def close(a, b):
    if a.size == 0 and b.size == 0:  # the conv window with d_conv = 1
        return a.shape == b.shape
    # Same kernels on both sides; they differ only in how MLX associates the weight-gradient GEMMs
    # (and the in_proj halves' scatter), a few float32 ulp of each array's scale (measured <= 1.1e-7
    # of max|b|). Bound: 1e-5 of max|b| per array.
    return mx.abs(a - b).max().item() <= 1e-5 * mx.abs(b).max().item()


# recompute from the block input; keep in_proj's output and the scan's checkpoints (the scan's
# backward re-forms its output); keep in_proj's output with ops lacking the checkpointed scan pair
# (the scan's forward runs again under mx.vjp)
SCHEMES = {"input": (False, True), "in_proj": (True, True), "in_proj, scan again": (True, False)}


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(
    "dims,d_state,d_conv,expand,batch,time",
    [(16, 4, 4, 2, 2, 37), (8, 16, 1, 3, 1, 16), (24, 5, 3, 2, 3, 1), (32, 16, 4, 2, 2, 50)],
)
def test_recomputing_backward_matches_autodiff_of_the_same_block(dims, d_state, d_conv, expand, batch, time,
                                                                 scheme, device):
    blk = make_block(dims, d_state, d_conv, expand, seed=dims + time)
    args = primals(blk, batch, time, seed=time)
    keep_in_proj, checkpointed_scan = SCHEMES[scheme]
    ops, sizes = _ops(True), blk._sizes
    if not checkpointed_scan:
        ops = dataclasses.replace(ops, selective_scan_checkpointed=None, selective_scan_backward=None)
    out_shapes = [(batch, time, dims), (batch, d_conv - 1, blk.d_inner), (batch, blk.d_inner, d_state)]
    cotangents = [mx.random.normal(s, key=mx.random.key(100 + i)) for i, s in enumerate(out_shapes)]

    outs, grads = run_vjp(recomputing_block(ops, sizes, keep_in_proj), blk, args, cotangents)
    want_outs, want_grads = run_vjp(lambda p, *a: block_forward(ops, p, *a, sizes), blk, args, cotangents)

    for name, got, want in zip(["out", "window", "ssm"], outs, want_outs):
        assert got.shape == want.shape and close(got, want), name
    names = list(PARAMS) + ["h", "window", "ssm"]
    for name, got, want in zip(names, grads, want_grads):
        if name == "window" and d_conv == 1:
            assert got.size == 0
            continue
        assert got.shape == want.shape, name
        assert mx.abs(want).max().item() > 0, name
        assert close(got, want), (name, mx.abs(got - want).max().item(), mx.abs(want).max().item())


@pytest.mark.parametrize("keep_in_proj", [False, True])
def test_compiled_training_gradient_equals_the_eager_one(keep_in_proj, device):
    core = MambaCore(16, 2, 4, 4, 2, fused=True, keep_in_proj=keep_in_proj)
    mx.eval(core.parameters())
    x = mx.random.normal((2, 21, 16), key=mx.random.key(7))

    def loss(params, x):
        core.update(params)
        y, _ = core(x)
        return (y * y).mean()

    vg = mx.value_and_grad(loss, argnums=(0, 1))
    eager = vg(core.trainable_parameters(), x)
    compiled = mx.compile(vg)(core.trainable_parameters(), x)
    from mlx.utils import tree_flatten

    for (path, a), (_, b) in zip(tree_flatten(eager), tree_flatten(compiled)):
        assert close(b, a), path


def _fwd_bwd_peak(layers, batch, time, dims, keep_in_proj=False):
    core = MambaCore(dims, layers, 16, 4, 2, fused=True, keep_in_proj=keep_in_proj)
    x = mx.random.normal((batch, time, dims), key=mx.random.key(1))
    mx.eval(core.parameters(), x)

    def loss(params, x):
        core.update(params)
        y, _ = core(x)
        return (y * y).sum()

    step = mx.grad(loss, argnums=(0, 1))
    mx.eval(step(core.trainable_parameters(), x))  # warm-up
    mx.synchronize()
    baseline = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(step(core.trainable_parameters(), x))
    return mx.get_peak_memory() - baseline


@pytest.mark.cpu_only("peak-memory bound measured with the CPU backend's buffer lifetimes and its memory-limit behaviour")
def test_training_memory_per_block_is_its_input_not_its_activations():
    # A limit below what the step needs makes MLX wait for each op before issuing the next, so the
    # peak is the graph's own, not the run-ahead of MLX's CPU task queue (which varies with timing).
    batch, time, dims = 2, 512, 64
    row = batch * time * dims * 4  # one (batch, time, dims) float32 array; d_inner arrays are 2x
    old = mx.set_memory_limit(1)
    try:
        two, six = _fwd_bwd_peak(2, batch, time, dims), _fwd_bwd_peak(6, batch, time, dims)
    finally:
        mx.set_memory_limit(old)
    # Autodiff of the same block keeps its activations (hn, x, z, conv out, delta, scan out and
    # checkpoints, most of them d_inner = 2 rows wide): measured 16 rows per extra block. The
    # recomputing backward keeps the block input: measured 0.97 rows. Bound: 3 rows.
    per_block = (six - two) / 4
    assert 0 < two and per_block < 3 * row, (two, six, per_block / row)


@pytest.mark.cpu_only("peak-memory bound measured with the CPU backend's buffer lifetimes and its memory-limit behaviour")
def test_keeping_in_proj_output_and_scan_checkpoints_costs_six_rows_per_block():
    batch, time, dims = 2, 512, 64
    row = batch * time * dims * 4
    old = mx.set_memory_limit(1)
    try:
        two, six = (_fwd_bwd_peak(n, batch, time, dims, keep_in_proj=True) for n in (2, 6))
    finally:
        mx.set_memory_limit(old)
    # the block input (1 row), in_proj's x and z (d_inner = 2 rows each) and the scan's checkpoints
    # (d_inner x state 16 every 16 steps: 2 rows): measured 7.02 rows per extra block (x and z
    # alone: 4.95; the block-input-only backward: 1.06; autodiff: 16). Bounds: 6 to 8 rows.
    per_block = (six - two) / 4
    assert 0 < two and 6 * row < per_block < 8 * row, (two, six, per_block / row)
