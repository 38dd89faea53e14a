"""The automatic choice of the model-level fused ops (dfnet4.ops._auto): the primitives on the CPU
and on a GPU of a Metal build, the pure-MLX paths on a GPU the build has no kernels for, explicit
choices respected."""

from __future__ import annotations

import mlx.core as mx
import pytest

from dfnet4 import _extension
from dfnet4.model.batchnorm import BatchNorm
from dfnet4.ops import _auto


def test_explicit_choices_are_kept():
    assert _auto.use_fused(False) is False
    assert _auto.use_fused(True) is True
    assert _auto.check(None, "x") is None


@pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext is not built")
def test_none_means_the_primitive_where_the_build_has_kernels_for_the_device(monkeypatch):
    assert _auto.use_fused(None) is True  # the tests run on the CPU (tests/conftest.py)
    metal = bool(_extension.load().build_info()["metal"])
    assert _auto.gpu_kernels() is metal
    monkeypatch.setattr(_auto.mx, "default_device", lambda: mx.Device(mx.gpu, 0))
    assert _auto.use_fused(None) is metal  # Metal build: the kernels; elsewhere: pure MLX
    monkeypatch.setattr(_auto, "gpu_kernels", lambda: True)
    assert _auto.use_fused(None) is True
    monkeypatch.setattr(_auto, "gpu_kernels", lambda: False)
    assert _auto.use_fused(None) is False


def test_fused_true_without_the_extension_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setattr(_extension, "available", lambda: False)
    assert _auto.use_fused(None) is False
    with pytest.raises(RuntimeError, match="BatchNorm: fused=True needs dfnet4's compiled extension"):
        BatchNorm(4, fused=True)


@pytest.mark.parametrize("name, who", [("gru", "gru backbone"), ("mamba", "SqueezedMamba")])
def test_backbones_fused_true_without_the_extension_is_an_error_not_a_fallback(monkeypatch, name, who):
    from dfnet4 import backbones

    monkeypatch.setattr(_extension, "available", lambda: False)
    with pytest.raises(RuntimeError, match=f"{who}: fused=True needs dfnet4's compiled extension"):
        backbones.create(name, 8, 8, 8, fused=True)
    for fused in (None, False):  # None: the reference path, without a word; False: as asked
        model = backbones.create(name, 8, 8, 8, fused=fused)
        assert (model.core if name == "gru" else model).fused is False
