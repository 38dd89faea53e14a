"""The training buffer-cache setting (dfnet4.memory) and its config/CLI validation."""

from __future__ import annotations

import mlx.core as mx
import pytest

from dfnet4.memory import GiB, configure_buffer_cache, parse_cache_limit
from dfnet4.train.config import RunConfig


@pytest.fixture
def restore_cache_limit():
    previous = mx.set_cache_limit(mx.get_memory_limit())
    yield
    mx.set_cache_limit(previous)


@pytest.mark.parametrize("value,expected", [(None, None), ("auto", None), (0, 0.0), ("1.5", 1.5), (8, 8.0)])
def test_parse_cache_limit(value, expected):
    assert parse_cache_limit(value) == expected


@pytest.mark.parametrize("value", ["lots", -1, float("nan"), [1]])
def test_parse_cache_limit_rejects_bad_values(value):
    with pytest.raises(ValueError, match="train.buffer_cache_gib"):
        parse_cache_limit(value, "train.buffer_cache_gib")


def test_configure_sets_mlx_cache_limit(restore_cache_limit):
    assert configure_buffer_cache(0.25) == GiB // 4
    assert mx.set_cache_limit(0) == GiB // 4  # returns the limit that was in force
    assert configure_buffer_cache(None) == mx.get_memory_limit()
    assert mx.set_cache_limit(0) == mx.get_memory_limit()


def test_freed_buffers_are_reused_with_the_cache(restore_cache_limit):
    """The point of the setting: a freed 64 MiB activation stays cached instead of going back to the OS."""
    configure_buffer_cache(None)
    mx.clear_cache()
    a = mx.ones((16, 1024, 1024))
    mx.eval(a)
    del a
    assert mx.get_cache_memory() >= 64 * 1024 * 1024


def test_run_config_validates_buffer_cache():
    cfg = RunConfig()
    cfg.train.buffer_cache_gib = "big"
    with pytest.raises(ValueError, match="train.buffer_cache_gib"):
        cfg.validate()
