"""python -m dfnet4.selfcheck: its report, its exit status, and that it fails loudly."""

from __future__ import annotations

import mlx.core as mx
import pytest

from dfnet4 import _extension, ops, selfcheck

pytestmark = pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext not built")


def test_passes_and_says_what_ran(capsys):
    assert selfcheck.main(["--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "RESULT: PASS" in out and "FAIL" not in out
    for name in ("selective_scan", "causal_conv1d", "gru", "2 training steps"):
        assert f"PASS  [cpu] {name}" in out
    assert f"MLX {mx.__version__}" in out
    if mx.metal.is_available():
        assert "PASS  [gpu] selective_scan fwd+bwd, GPU vs CPU" in out
    else:
        assert "only the CPU part ran" in out


def test_a_wrong_result_and_an_error_fail_with_what_to_send(monkeypatch, capsys):
    real = ops.selective_scan

    def off_by_a_little(*args, **kwargs):
        out, last = real(*args, **kwargs)
        return out * (1 + 1e-3), last

    def broken(*args, **kwargs):
        raise RuntimeError("dfnet4.ops.gru: the Metal kernel 'gru_forward_step_float32' could not be built")

    monkeypatch.setattr(ops, "selective_scan", off_by_a_little)
    monkeypatch.setattr(ops, "gru", broken)
    assert selfcheck.main(["--steps", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  [cpu] selective_scan fwd+bwd, fused vs reference" in out
    assert "FAIL  [cpu] gru fwd+bwd" in out and "gru_forward_step_float32' could not be built" in out
    assert "PASS  [cpu] causal_conv1d" in out
    assert "RESULT: FAIL" in out and "What to send back" in out


def test_steps_below_two_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        selfcheck.main(["--steps", "1"])
    assert exit_info.value.code == 2
    assert "--steps must be at least 2" in capsys.readouterr().err
