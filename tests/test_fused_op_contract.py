"""The contract every fused op keeps (dfnet4.ops.selective_scan, causal_conv1d, gru, batch_norm,
depthwise_conv, compressed_spectral_loss and rms_norm), one test per property, each run for every op
(tests/fused_op_specs.py describes the ops and their tolerances): mx.compile, also shapeless and
under mx.grad; strided, sliced and broadcast views; half-precision and float64 inputs; results
independent of the thread count and of the CPU instruction-set variant; the transforms they refuse;
ValueErrors naming the argument for bad input. Each op's parity with its pure-MLX reference over
many shapes is in its own test file."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from fused_op_specs import SPECS, outputs_and_grads, run
from gru_cases import max_scaled_error
from test_selective_scan_support import assert_close

from dfnet4 import _extension

pytestmark = pytest.mark.skipif(
    not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)"
)

specs = pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)


def _positional(spec, fn, case):
    """(names, values, f) with f(*values) = the spec's loss of fn's outputs: what mx.compile takes."""
    names = list(case.arrays)

    def f(*values):
        return spec.loss(run(fn, dict(zip(names, values)), case.options))

    return names, [case.arrays[k] for k in names], f


@specs
def test_compiled_outputs_and_gradients_match_eager(spec, device):
    case = spec.case(**spec.compile_case)
    names, values, f = _positional(spec, spec.fn, case)
    argnums = tuple(range(len(names)))
    eager_outs = run(spec.fn, case.arrays, case.options)
    eager_val = f(*values)
    eager_grads = mx.grad(f, argnums=argnums)(*values)

    forward = mx.compile(lambda *v: run(spec.fn, dict(zip(names, v)), case.options))
    for i, (got, want) in enumerate(zip(forward(*values), eager_outs)):
        spec.compiled_close(got, want, f"compiled output {i}", "grad")
    spec.compiled_close(mx.compile(f)(*values), eager_val, "compiled value", "value")
    for name, g, e in zip(names, mx.grad(mx.compile(f), argnums=argnums)(*values), eager_grads):
        spec.compiled_close(g, e, f"grad of compiled, d{name}", "grad")
    for name, g, e in zip(names, mx.compile(mx.grad(f, argnums=argnums))(*values), eager_grads):
        spec.compiled_close(g, e, f"compiled grad, d{name}", "grad")


SHAPELESS = [(spec, variant) for spec in SPECS for variant in spec.variants]


@pytest.mark.parametrize("spec,variant", SHAPELESS, ids=[f"{s.name}-{v}" for s, v in SHAPELESS])
def test_shapeless_compile_follows_new_shapes(spec, variant, device):
    # One graph compiled at the first shape, replayed at others (output_shapes at work): outputs
    # against the reference, gradients against the eager op. An absent optional input must not
    # leave a constant of the first call's shape in the graph.
    first = spec.shapeless_case(variant, spec.shapeless_shapes[0], seed=0)
    names = list(first.arrays)
    argnums = tuple(range(len(names)))

    def forward(*values):
        return run(spec.fn, dict(zip(names, values)), first.options)

    def loss(*values):
        return spec.loss(forward(*values))

    compiled_forward = mx.compile(forward, shapeless=True)
    compiled_grad = mx.compile(mx.grad(loss, argnums=argnums), shapeless=True)
    for shape in spec.shapeless_shapes:
        case = spec.shapeless_case(variant, shape, seed=int(np.prod(shape[:2])))
        values = [case.arrays[k] for k in names]
        outs = compiled_forward(*values)
        ref = run(spec.reference, case.arrays, case.options)
        assert [o.shape for o in outs] == [r.shape for r in ref]
        spec.parity_close(outs, ref, f"shapeless {shape}")
        if not spec.shapeless_grad:  # the op's documented limit: MLX refuses it, loudly
            with pytest.raises(ValueError, match=r"(?i)cannot (infer output shapes|reshape)"):
                compiled_grad(*values)
            continue
        expected = mx.grad(loss, argnums=argnums)(*values)
        for name, g, e in zip(names, compiled_grad(*values), expected):
            assert g.shape == e.shape, name
            spec.compiled_close(g, e, f"shapeless grad {shape}, d{name}", "grad")


@specs
def test_views_give_the_results_of_contiguous_copies(spec, device):
    # Transposed storage, strides, slices with offsets, broadcasts: the op makes them contiguous.
    case = spec.case(**spec.view_case)
    views = spec.views(case)
    assert set(views) == set(case.arrays)
    for k, v in views.items():
        assert v.shape == case.arrays[k].shape, k
        assert mx.array_equal(v, case.arrays[k]), k
    outs, grads = outputs_and_grads(spec, spec.fn, case, views)
    ref_outs, ref_grads = outputs_and_grads(spec, spec.fn, case)
    for i, (got, want) in enumerate(zip(outs, ref_outs)):
        spec.view_close(got, want, f"output {i}")
    for name in case.arrays:
        spec.view_close(grads[name], ref_grads[name], f"d{name}")


@specs
@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision_inputs_compute_in_float32(spec, dtype, device):
    case = spec.case(**spec.half_case, dtype=dtype)
    outs = run(spec.fn, case.arrays, case.options)
    assert all(o.dtype == dtype for o in outs)
    f32 = {k: v.astype(mx.float32) for k, v in case.arrays.items()}
    spec.half_close(outs, run(spec.half_oracle, f32, case.options), 2.0**-7 if dtype == mx.bfloat16 else 2.0**-10)
    names = list(case.arrays)

    def loss(fn):
        return lambda *a: run(fn, dict(zip(names, a)), case.options)[0].astype(mx.float32).sum()

    argnums = tuple(range(len(names)))
    grads = mx.grad(loss(spec.fn), argnums=argnums)(*case.arrays.values())
    oracle_grads = mx.grad(loss(spec.half_oracle), argnums=argnums)(*f32.values())
    # Each gradient is the float32 one rounded once to the half type (and summed over its terms in
    # float32 first): within a few half ulps.
    tol = 4 * (2.0**-7 if dtype == mx.bfloat16 else 2.0**-10)
    for name, g, r in zip(names, grads, oracle_grads):
        assert g.dtype == dtype, name
        assert bool(mx.all(mx.isfinite(g))), name
        assert_close(g, r, f"d{name}", rtol=tol, atol_scale=tol)


@specs
def test_float64_runs_on_the_cpu_and_is_refused_on_the_gpu_when_the_graph_is_built(spec, device):
    case = spec.case(**spec.view_case, dtype=mx.float64)
    if device == mx.cpu:
        assert all(o.dtype == mx.float64 for o in run(spec.fn, case.arrays, case.options))
    else:
        with pytest.raises(ValueError, match="float64 is only supported on the CPU stream"):
            run(spec.fn, case.arrays, case.options)


@specs
@pytest.mark.cpu_only("DFNET4_NUM_THREADS sets the CPU kernels' threads")
def test_thread_count_does_not_change_results(spec, monkeypatch):
    # Work is split so that every sum runs in a fixed order inside one work item (partials folded
    # in order), so any thread count gives bitwise-identical results (8 threads on a 2-core machine
    # also exercises workers the OS deschedules).
    case = spec.case(**spec.determinism_case)
    results = []
    for threads in ("1", "2", "3", "8"):
        monkeypatch.setenv("DFNET4_NUM_THREADS", threads)
        outs, grads = outputs_and_grads(spec, spec.fn, case)
        results.append([np.array(o) for o in outs] + [np.array(grads[k]) for k in case.arrays])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


@specs
@pytest.mark.parametrize("isa", ["generic", "avx2"])
@pytest.mark.cpu_only("DFNET4_CPU_ISA picks among the CPU kernels' x86 variants")
def test_every_cpu_instruction_set_variant_agrees(spec, isa, monkeypatch):
    # The x86 build carries AVX-512, AVX2 and baseline copies of the CPU loops and picks the best
    # at run time (csrc/cpu_isa.h); DFNET4_CPU_ISA caps it so each copy is checked on one machine.
    # (Where the cap is above what the CPU has, the test compares the same variant with itself.)
    case = spec.case(**spec.isa_case)
    outs, grads = outputs_and_grads(spec, spec.fn, case)
    monkeypatch.setenv("DFNET4_CPU_ISA", isa)
    outs_isa, grads_isa = outputs_and_grads(spec, spec.fn, case)
    for i, (got, want) in enumerate(zip(outs_isa, outs)):
        assert max_scaled_error(got, want) < spec.isa_tolerance, f"output {i}"
    for k in grads:
        assert max_scaled_error(grads_isa[k], grads[k]) < spec.isa_tolerance, k


@specs
def test_jvp_vmap_and_second_order_raise_clear_errors(spec):
    case = spec.case(**spec.view_case)
    names = list(case.arrays)
    values = list(case.arrays.values())
    ref = f"reference\\.{spec.name}"

    def f(*a):
        return run(spec.fn, dict(zip(names, a)), case.options)[0]

    with pytest.raises(RuntimeError, match=rf"{spec.name} does not support forward-mode .*jvp.*{ref}"):
        mx.jvp(f, values, values)
    with pytest.raises(RuntimeError, match=rf"{spec.name} does not support mx.vmap"):
        mx.vmap(lambda first: f(first, *values[1:]))(mx.stack([values[0]] * 2))
    first = mx.grad(lambda v: f(v, *values[1:]).sum())
    with pytest.raises(RuntimeError, match=rf"{spec.name}: second-order .*second derivatives.*{ref}"):
        mx.eval(mx.grad(lambda v: first(v).sum())(values[0]))


BAD = [(spec, overrides, pattern) for spec in SPECS for overrides, pattern in spec.bad]


@pytest.mark.parametrize("spec,overrides,pattern", BAD,
                         ids=[f"{s.name}-{i}" for i, (s, _, _) in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_argument(spec, overrides, pattern):
    case = spec.bad_case()
    kwargs = {**case.arrays, **case.options, **overrides}
    with pytest.raises(ValueError, match=rf"{spec.name}: {pattern}"):
        spec.fn(**kwargs)  # raised while building the graph: nothing is evaluated
