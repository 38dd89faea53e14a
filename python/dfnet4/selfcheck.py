"""`python -m dfnet4.selfcheck`: does this installation compute what it should, on every device?

For the CPU and, where MLX has a Metal GPU, the GPU: each fused op (selective scan, causal conv +
SiLU, GRU, RMSNorm; batch norm, depthwise conv and its transpose, spectral loss), forward and every gradient,
against the pure-MLX reference on the same device; on the GPU also against the CPU's result; then a
few compiled training steps of a small DfNet4 (Mamba backbone, fused kernels) against the same steps
on the reference ops (and on the GPU against the CPU's). Prints one PASS/FAIL line per check with timings (a GPU's first call includes compiling the
Metal kernels), the machine and device, and on failure what to send back (docs/macos.md).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import dfnet4

# Pass bounds, as max |fused - reference| over max |reference| per array. The parity tests measure
# a few 1e-7 (float32, other summation orders); 1e-4 leaves room for a GPU's math library and
# still fails any wrong term (>= 1e-3). Training: a few steps from the same weights and batch.
OP_TOLERANCE = 1e-4
TRAIN_TOLERANCE = 1e-3

REPORT_HINT = """\
What to send back: the whole output above, and the output of
    sw_vers; xcode-select -p; python -c "import mlx.core as mx; print(mx.metal.device_info())"
in a new issue on the dfnet4 repository ("selfcheck failure"); docs/macos.md says more."""


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.results.append(result)
        mark = "PASS" if result.ok else "FAIL"
        print(f"  {mark}  {result.name:<46}  {result.detail}", flush=True)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def _scaled_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30)) if b.size else 0.0


def _to_numpy(tree) -> list[np.ndarray]:
    import mlx.core as mx

    flat = tree if isinstance(tree, (list, tuple)) else [tree]
    return [np.array(x.astype(mx.float32, stream=mx.cpu)) for x in flat]


def _timed(fn: Callable[[], list]) -> tuple[list, float]:
    import mlx.core as mx

    start = time.perf_counter()
    out = fn()
    mx.eval(out)
    mx.synchronize()
    return out, time.perf_counter() - start


# ---- the ops -----------------------------------------------------------------------------------------

@dataclass
class OpCase:
    name: str
    inputs: dict  # numpy arrays
    fused: Callable
    reference: Callable


def _op_cases() -> list[OpCase]:
    from dfnet4 import ops, reference

    rng = np.random.default_rng(0)
    b, t, c, n = 2, 50, 40, 16
    scan = {"u": rng.standard_normal((b, t, c)), "delta": rng.standard_normal((b, t, c)),
            "A": -np.exp(0.5 * rng.standard_normal((c, n))), "B": rng.standard_normal((b, t, n)),
            "C": rng.standard_normal((b, t, n)), "D": rng.standard_normal(c),
            "z": rng.standard_normal((b, t, c)), "delta_bias": 0.3 * rng.standard_normal(c),
            "h0": rng.standard_normal((b, c, n))}
    k = 4
    conv = {"x": rng.standard_normal((b, t, c)), "weight": rng.uniform(-0.5, 0.5, (k, c)),
            "bias": rng.uniform(-0.5, 0.5, c), "window": rng.standard_normal((b, k - 1, c))}
    d, h = 12, 24
    s = 1 / np.sqrt(h)
    gru = {"x": rng.standard_normal((b, t, d)), "Wx": rng.uniform(-s, s, (3 * h, d)),
           "Wh": rng.uniform(-s, s, (3 * h, h)), "b": rng.uniform(-s, s, 3 * h),
           "bhn": rng.uniform(-s, s, h), "h0": 0.5 * rng.standard_normal((b, h))}

    f = 16
    norm = {"x": 1.5 + rng.standard_normal((b, t, c)), "weight": rng.standard_normal(c),
            "bias": rng.standard_normal(c)}
    depthwise = {"x": rng.standard_normal((b, t, 2 * f, c)), "weight": rng.standard_normal((3, c)) / np.sqrt(3)}
    spectra = {"pred": rng.standard_normal((b, t, f, 2)), "target": rng.standard_normal((b, t, f, 2))}
    rms = {"x": rng.standard_normal((b, t, c)), "weight": 1 + 0.5 * rng.standard_normal(c)}

    def scan_fn(op):
        return lambda **a: op(**a, delta_softplus=True, return_last_state=True)

    def dw_fn(op, transposed):
        geometry = dict(stride=2, padding=1, transposed=transposed, output_padding=int(transposed))
        return lambda **a: op(**a, **geometry)

    def conv_fn(op):
        return lambda **a: op(**a, activation="silu", return_window=True)

    return [
        OpCase("selective_scan", scan, scan_fn(ops.selective_scan), scan_fn(reference.selective_scan)),
        OpCase("causal_conv1d", conv, conv_fn(ops.causal_conv1d), conv_fn(reference.causal_conv1d)),
        OpCase("gru", gru, ops.gru, reference.gru),
        OpCase("rms_norm", rms, ops.rms_norm, reference.rms_norm),
        # no ReLU: a value at its kink could take either side under another rounding of the stats
        OpCase("batch_norm", norm, ops.batch_norm, reference.batch_norm),
        OpCase("depthwise_conv", depthwise, dw_fn(ops.depthwise_conv, False), dw_fn(reference.depthwise_conv, False)),
        OpCase("depthwise_conv transposed", {**depthwise, "x": depthwise["x"][:, :, :f]},
               dw_fn(ops.depthwise_conv, True), dw_fn(reference.depthwise_conv, True)),
        OpCase("compressed_spectral_loss", spectra, ops.compressed_spectral_loss,
               reference.compressed_spectral_loss),
    ]


def _forward_and_gradients(fn: Callable, inputs: dict) -> Callable[[], list]:
    """A function computing fn's outputs and the gradient of every input under fixed cotangents."""
    import mlx.core as mx

    names = list(inputs)
    arrays = [mx.array(inputs[k].astype(np.float32)) for k in names]
    outs = fn(**dict(zip(names, arrays)))
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    rng = np.random.default_rng(1)
    cotangents = [mx.array(rng.standard_normal(o.shape).astype(np.float32)) for o in outs]

    def run():
        def f(*a):
            o = fn(**dict(zip(names, a)))
            return list(o) if isinstance(o, (list, tuple)) else [o]

        values, grads = mx.vjp(f, arrays, cotangents)
        return list(values) + list(grads)

    return run


def check_ops(report: Report, device, cpu_results: dict | None) -> dict:
    """Fused vs reference for each op on `device`; on the GPU also vs the CPU's fused results."""
    import mlx.core as mx

    results = {}
    label = "gpu" if device == mx.gpu else "cpu"
    for case in _op_cases():
        name = f"{case.name} fwd+bwd, fused vs reference"
        try:
            with mx.stream(device):
                fused = _forward_and_gradients(case.fused, case.inputs)
                got, first = _timed(fused)
                _, again = _timed(fused)
                want, _ = _timed(_forward_and_gradients(case.reference, case.inputs))
            got, want = _to_numpy(got), _to_numpy(want)
            err = max(_scaled_error(g, w) for g, w in zip(got, want))
            note = " (includes compiling the Metal kernels)" if label == "gpu" else ""
            report.add(Result(f"[{label}] {name}", err <= OP_TOLERANCE,
                              f"max err {err:.1e}; {again * 1e3:.1f} ms, first call "
                              f"{first * 1e3:.0f} ms{note}", again))
            results[case.name] = got
            if cpu_results is not None and case.name in cpu_results:
                cross = max(_scaled_error(g, c) for g, c in zip(got, cpu_results[case.name]))
                report.add(Result(f"[{label}] {case.name} fwd+bwd, GPU vs CPU", cross <= OP_TOLERANCE,
                                  f"max err {cross:.1e}"))
        except Exception as exc:  # report and go on: the other checks still say something
            report.add(Result(f"[{label}] {name}", False, _describe(exc)))
    return results


# ---- training ----------------------------------------------------------------------------------------

def _small_model(fused: bool, weights: dict | None):
    import mlx.core as mx

    from dfnet4.backbones.mamba import MambaOptions
    from dfnet4.bench import variants
    from dfnet4.model import DfNet4, DfNet4Config

    mx.random.seed(0)
    model = DfNet4(DfNet4Config(backbone="mamba", conv_ch=16, emb_hidden_dim=32, df_hidden_dim=32,
                                nb_df=32, enc_linear_groups=8, linear_groups=8,
                                df_gru_linear_groups=8, mamba=MambaOptions(fused=fused)))
    variants.apply(model, variants.Fused() if fused else variants.PURE_MLX)  # batch norm, depthwise convs
    if weights is not None:
        model.load_weights([(k, mx.array(v)) for k, v in weights.items()])
    return model


def _batch(frames: int = 40) -> dict:
    from dfnet4.model import DfNet4Config

    cfg = DfNet4Config()
    rng = np.random.default_rng(2)
    samples = cfg.hop_size * (frames - 1)
    clean = 0.1 * rng.standard_normal((2, samples)).astype(np.float32)
    noisy = clean + 0.05 * rng.standard_normal((2, samples)).astype(np.float32)
    return {"clean": clean, "noisy": noisy}


def _train(fused: bool, weights: dict, steps: int, device) -> tuple[list[float], float]:
    """Losses of `steps` compiled training steps (dfnet4's loss, AdamW, clipping) and s/step."""
    import mlx.core as mx

    from dfnet4.bench import objective, workloads
    from dfnet4.dsp import stft

    with mx.stream(device):
        model = _small_model(fused, weights)
        obj = objective.resolve(model, loss_fused=fused)
        data = _batch()
        batch = {"clean_audio": mx.array(data["clean"]), "noisy_audio": mx.array(data["noisy"])}
        batch["noisy_spec"] = stft(batch["noisy_audio"], model.config.fft_size, model.config.hop_size)
        step = workloads.train_step(model, batch, obj.loss)
        losses, start = [], None
        for i in range(steps):
            if i == 1:
                start = time.perf_counter()  # step 0 also compiles
            value, state = step()
            mx.eval(value, state)
            losses.append(value.item())
        per_step = (time.perf_counter() - start) / (steps - 1) if steps > 1 else float("nan")
    return losses, per_step


def _loss_difference(got: list[float], want: list[float]) -> float:
    """Largest relative difference of two loss trajectories (inf when any loss is not finite)."""
    if not all(np.isfinite(got + want)):
        return float("inf")
    return max(abs(g - w) / abs(w) for g, w in zip(got, want))


def check_training(report: Report, device, steps: int, cpu_losses: list[float] | None):
    import mlx.core as mx
    from mlx.utils import tree_flatten

    label = "gpu" if device == mx.gpu else "cpu"
    name = f"{steps} training steps, fused vs reference"
    try:
        with mx.stream(mx.cpu):
            weights = {k: np.array(v) for k, v in tree_flatten(_small_model(False, None).parameters())}
        fused, per_step = _train(True, weights, steps, device)
        ref, _ = _train(False, weights, steps, device)
        diff = _loss_difference(fused, ref)
        losses = " ".join(f"{v:.5g}" for v in fused)
        report.add(Result(f"[{label}] {name}", diff <= TRAIN_TOLERANCE,
                          f"losses {losses}, max rel diff {diff:.1e}; {per_step * 1e3:.0f} ms/step"))
        if cpu_losses is not None:
            diff = _loss_difference(fused, cpu_losses)
            report.add(Result(f"[{label}] {steps} training steps, GPU vs CPU", diff <= TRAIN_TOLERANCE,
                              f"max rel diff {diff:.1e}"))
        return fused
    except Exception as exc:
        report.add(Result(f"[{label}] {name}", False, _describe(exc)))
        return None


# ---- the report --------------------------------------------------------------------------------------

def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "error: " + "".join(lines).strip().replace("\n", "\n        ")


def _machine() -> list[str]:
    import mlx.core as mx

    from dfnet4 import _extension

    mac = platform.mac_ver()[0]
    system = f"macOS {mac}" if mac else f"{platform.system()} {platform.release()}"
    lines = [f"dfnet4 {dfnet4.__version__}, MLX {mx.__version__}, Python {platform.python_version()}, "
             f"{system} ({platform.machine()})"]
    try:
        info = _extension.load().build_info()
        lines.append(f"extension: built, Metal kernels {'included' if info['metal'] else 'not in this build'}")
    except ImportError as exc:
        lines.append(f"extension: NOT importable ({exc})")
    if mx.metal.is_available():
        info = mx.metal.device_info()
        memory = info.get("memory_size", 0) / 2**30
        lines.append(f"GPU: {info.get('device_name', '?')} ({info.get('architecture', '?')}, "
                     f"{memory:.0f} GiB)")
    else:
        lines.append("GPU: none (mx.metal.is_available() is False)")
    return lines


def run(steps: int = 3) -> Report:
    import mlx.core as mx

    print("dfnet4 self-check")
    for line in _machine():
        print(f"  {line}")
    report = Report()
    print("CPU")
    cpu_results = check_ops(report, mx.cpu, None)
    cpu_losses = check_training(report, mx.cpu, steps, None)
    if mx.metal.is_available():
        print(f"GPU ({mx.metal.device_info().get('device_name', 'Metal')})")
        check_ops(report, mx.gpu, cpu_results)
        check_training(report, mx.gpu, steps, cpu_losses)
    else:
        print("GPU\n  not available: mx.metal.is_available() is False on this machine, so only the "
              "CPU part ran (on a Mac with Apple silicon the GPU part runs too)")
    failed = [r for r in report.results if not r.ok]
    if failed:
        print(f"RESULT: FAIL ({len(failed)} of {len(report.results)} checks failed)")
        print(REPORT_HINT)
    else:
        print(f"RESULT: PASS ({len(report.results)} checks)")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dfnet4.selfcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per run (default 3, at least 2)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(f"--steps must be at least 2 (the first also compiles), got {args.steps}")
    return 0 if run(args.steps).ok else 1


if __name__ == "__main__":
    sys.exit(main())
