"""What the single-op benchmarks (bench/scan.py, bench/conv.py) share: a forward and a
forward+backward timed with dfnet4.bench.timing, and the markdown table they publish. Each script
keeps the units and digits of its published results (scan.md in MB, conv.md in MiB)."""

from __future__ import annotations

from dataclasses import dataclass

from dfnet4.bench.timing import MiB, measure


def measure_pair(forward, forward_backward, repeats: int) -> dict:
    """Median forward and forward+backward seconds (one warm-up each, every output evaluated) and
    the peak memory of a forward+backward, inputs included, in bytes."""
    fwd = measure(forward, warmup=1, repeats=repeats)
    fwd_bwd = measure(forward_backward, warmup=1, repeats=repeats)
    return {"forward_s": fwd.median_ms / 1e3, "forward_backward_s": fwd_bwd.median_ms / 1e3,
            "peak_bytes": fwd_bwd.peak_mib * MiB}


@dataclass
class TableFormat:
    memory_unit: str  # "MB" (10^6 bytes) or "MiB" (2^20 bytes)
    ms_digits: int
    peak_ratio_digits: int

    def memory(self, nbytes: float) -> str:
        return f"{nbytes / (1e6 if self.memory_unit == 'MB' else 2**20):,.1f}"


def table(title: str, results: dict, fmt: TableFormat) -> str:
    """One row per method; ratios against the first (the fused op)."""
    fused = next(iter(results.values()))
    ms = lambda s: f"{s * 1e3:,.{fmt.ms_digits}f}"  # noqa: E731
    lines = [
        title,
        "",
        f"| method | forward ms | forward+backward ms | peak memory {fmt.memory_unit} | fwd+bwd vs fused | "
        "peak vs fused |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {ms(r['forward_s'])} | {ms(r['forward_backward_s'])} | {fmt.memory(r['peak_bytes'])} | "
            f"{r['forward_backward_s'] / fused['forward_backward_s']:,.1f}x | "
            f"{r['peak_bytes'] / fused['peak_bytes']:,.{fmt.peak_ratio_digits}f}x |"
        )
    return "\n".join(lines)
