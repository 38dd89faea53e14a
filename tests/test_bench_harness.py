"""The benchmark harness on tiny stand-in backbones/models: it must evaluate what it times, and its
outputs must be well-formed and contain every row and column. (No timing asserts: targets are shown
by the bench scripts, not tested.)"""

import json
from dataclasses import dataclass

import dfnet4  # noqa: F401  (before mlx.core, so MLX binds the optimised BLAS)
import mlx.core as mx
import mlx.nn as nn
import pytest

from dfnet4.bench import plot, report
from dfnet4.bench.backbones import run_backbones
from dfnet4.bench.runner import Settings
from dfnet4.bench.scaling import fit_exponent, predict_next, run_scaling
from dfnet4.bench.suite import MEASURES, TARGET_RATIOS, Impl, select
from dfnet4.bench.timing import measure, quartiles

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class StandInBackbone(nn.Module):
    def __init__(self, size: int, fail: bool = False):
        super().__init__()
        self.lin = nn.Linear(size, size)
        self.fail = fail

    def __call__(self, x, state=None):
        if self.fail:
            raise RuntimeError("stand-in failure")
        return mx.tanh(self.lin(x)), None


@dataclass
class StandInConfig:
    fft_size: int = 14  # -> 8 frequency bins

    def to_dict(self):
        return {"fft_size": self.fft_size}


class StandInModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = StandInConfig()
        self.lin = nn.Linear(16, 16)

    def __call__(self, spec):
        b, t, f, c = spec.shape
        y = self.lin(spec.reshape(b, t, f * c)).reshape(b, t, f, c)
        return y, {"lsnr": mx.mean(y, axis=(2, 3))}


NAMES = ["mamba/reference", "mamba/fused", "gru/mlx.nn.GRU", "gru/fused", "attention"]
IMPLS = [Impl(n, n.split("/")[0], f"stand-in {n}", {"layers": 1}, {"backbone": n}, reference="/" in n and "fused" not in n)
         for n in NAMES]


def backbone_factory(impl, settings):
    return StandInBackbone(settings.hidden)


def model_factory(impl, settings):
    return StandInModel()


def tiny(**kw):
    return Settings(batch=2, frames=6, hidden=8, repeats=2, warmup=1, **kw)


@pytest.fixture(scope="module")
def result():
    return run_backbones(IMPLS, tiny(), backbone_factory=backbone_factory, model_factory=model_factory,
                         log=lambda _: None, measure_blas=False)


def test_quartiles():
    assert quartiles([5.0]) == (5.0, 5.0, 5.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


def test_measure_evaluates_what_the_step_returns():
    # a lazy graph that is never evaluated allocates nothing: the peak shows it was computed
    n = 512
    m = measure(lambda: mx.ones((n, n)) * 2.0, warmup=1, repeats=3)
    assert m.peak_mib - m.baseline_mib >= n * n * 4 / 2**20
    assert m.repeats == 3 and len(m.samples_ms) == 3
    assert m.min_ms <= m.q1_ms <= m.median_ms <= m.q3_ms <= m.max_ms


def test_measure_rejects_bad_counts():
    with pytest.raises(ValueError, match="repeats"):
        measure(lambda: mx.zeros(1), warmup=0, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure(lambda: mx.zeros(1), warmup=-1, repeats=1)


def test_every_cell_measured(result):
    assert result["complete"] is True
    assert [r["name"] for r in result["implementations"]] == NAMES
    for row in result["implementations"]:
        assert set(row["results"]) == set(MEASURES)
        for cell in row["results"].values():
            assert "error" not in cell, cell
            assert cell["median_ms"] > 0 and cell["peak_mib"] > 0
        assert row["info"]["backbone_parameters"] == 8 * 8 + 8
        assert row["info"]["model_config"] == {"fft_size": 14}
    assert result["loss"].startswith("spectral L1")  # a stand-in without STFT sizes: the fallback


def test_ratios_are_the_quotients_of_the_table(result):
    assert [r["title"] for r in result["ratios"]] == [r.title for r in TARGET_RATIOS]
    by_name = {r["name"]: r["results"] for r in result["implementations"]}
    for r in result["ratios"]:
        expected = by_name[r["numerator"]][r["measure"]][r["stat"]] / by_name[r["denominator"]][r["measure"]][r["stat"]]
        assert r["value"] == pytest.approx(expected)
        assert r["met"] == (expected <= r["target"] if r["op"] == "<=" else expected >= r["target"])


def test_markdown_json_png(result, tmp_path):
    text = report.backbones_markdown(result)
    for name in NAMES:
        assert f"| {name} |" in text
    for label in MEASURES.values():
        assert label in text
    for r in TARGET_RATIOS:
        assert r.title in text
    assert "counted twice" in text and "MLX" in text
    report.write_json(result, tmp_path / "b.json")
    loaded = json.loads((tmp_path / "b.json").read_text())
    assert loaded["machine"]["mlx_version"] == mx.__version__
    assert loaded["machine"]["device"] == str(mx.default_device())
    for key in ("cpu_model", "cpu_cores_usable", "os", "dfnet4_kernel_threads", "blas"):
        assert key in loaded["machine"]
    plot.backbones_chart(result, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG_MAGIC


def test_failures_are_recorded_not_raised():
    def failing(impl, settings):
        return StandInBackbone(settings.hidden, fail=impl.name == "attention")

    res = run_backbones(IMPLS[-2:], tiny(measures=["backbone_forward", "backbone_fwd_bwd"]),
                        backbone_factory=failing, model_factory=model_factory, log=lambda _: None,
                        measure_blas=False)
    cells = {r["name"]: r["results"] for r in res["implementations"]}
    assert "error" not in cells["gru/fused"]["backbone_forward"]
    assert "stand-in failure" in cells["attention"]["backbone_forward"]["error"]
    text = report.backbones_markdown(res)
    assert "error: RuntimeError" in text and "## Failures" in text
    assert all(r["value"] is None for r in res["ratios"])  # none of the ratio pairs is complete


def test_fit_exponent_recovers_power_laws():
    frames = [125, 250, 500, 1000]
    assert fit_exponent(frames, [3.0 * f for f in frames]) == pytest.approx(1.0)
    assert fit_exponent(frames, [0.1 * f**2 for f in frames]) == pytest.approx(2.0)
    assert fit_exponent([100], [1.0]) is None


def test_scaling_run(tmp_path):
    impls = [IMPLS[0], IMPLS[4]]  # a reference one (limited) and attention
    res = run_scaling(impls, tiny(), frames_list=[4, 8, 16], reference_max_frames=8,
                      backbone_factory=backbone_factory, model_factory=model_factory,
                      log=lambda _: None, measure_blas=False)
    ref, att = res["implementations"]
    assert [p["frames"] for p in ref["points"]] == [4, 8, 16]
    assert "median_ms" in ref["points"][1] and "skipped" in ref["points"][2]
    assert all("median_ms" in p for p in att["points"])
    assert att["time_exponent"]["all"] is not None and att["memory_exponent"]["largest_3"] is not None
    text = report.scaling_markdown(res)
    assert "| mamba/reference |" in text and "| attention |" in text and "skipped" in text
    for f in (4, 8, 16):
        assert f"| {f} " in text
    plot.scaling_chart(res, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG_MAGIC


def test_predict_next_extrapolates_the_last_two_points():
    pts = [{"frames": 100, "t": 1.0}, {"frames": 200, "t": 4.0}, {"frames": 400, "skipped": "x"}]
    assert predict_next(pts, "t", 400, 1.0, 3.0) == pytest.approx(16.0)  # slope 2
    assert predict_next(pts, "t", 400, 1.0, 1.5) == pytest.approx(4.0 * 2**1.5)  # clamped
    assert predict_next(pts[:1], "t", 200, 1.0, 2.0) == pytest.approx(4.0)  # one point: the upper slope
    assert predict_next([], "t", 200, 1.0, 2.0) is None


def test_scaling_skips_lengths_predicted_over_the_memory_limit():
    saved = []
    res = run_scaling([IMPLS[4]], tiny(), frames_list=[4, 8, 16], memory_limit_mib=0.0,
                      backbone_factory=backbone_factory, model_factory=model_factory, log=lambda _: None,
                      on_update=lambda r: saved.append(r["complete"]), measure_blas=False)
    points = res["implementations"][0]["points"]
    assert "median_ms" in points[0]  # nothing to extrapolate from yet
    assert all("predicted peak" in p["skipped"] for p in points[1:])
    assert saved == [False] and res["complete"] is True
    assert "| attention |" in report.scaling_markdown(res)


def test_select():
    assert [i.name for i in select(IMPLS, "gru")] == ["gru/mlx.nn.GRU", "gru/fused"]
    assert [i.name for i in select(IMPLS, "mamba/fused,attention")] == ["mamba/fused", "attention"]
    with pytest.raises(ValueError, match="--only"):
        select(IMPLS, "lstm")
