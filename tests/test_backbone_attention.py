"""attention-specific behaviour: window semantics, cache contents, option validation.
(Shapes, streaming == offline, gradients and bad x are in test_backbones_common.py.)"""

import mlx.core as mx
import pytest

from dfnet4.backbones import create
from dfnet4.backbones.attention import SqueezedAttention

IN, HIDDEN, T = 8, 16, 12


def build(**opts):
    mx.random.seed(5)
    m = create("attention", IN, HIDDEN, IN, linear_groups=2, num_heads=2, **opts)
    mx.eval(m.parameters())
    return m


def changed_outputs(m, x, t_changed):
    """Frames whose output moves when only input frame t_changed is perturbed."""
    x2 = x.at[:, t_changed].add(1.0)
    d = mx.abs(m(x2)[0] - m(x)[0]).max(axis=(0, 2))
    return [t for t in range(x.shape[1]) if d[t].item() > 0]


@pytest.mark.parametrize("num_layers, window", [(1, 3), (2, 3), (1, 1), (3, 2)])
def test_window_bounds_the_receptive_field(num_layers, window):
    """Each layer looks back window-1 frames, so frame t0 reaches exactly t0 .. t0 + L*(window-1)."""
    m = build(num_layers=num_layers, window=window)
    x = mx.random.normal((1, T, IN), key=mx.random.key(1))
    t0 = 2
    assert changed_outputs(m, x, t0) == list(range(t0, min(T, t0 + num_layers * (window - 1) + 1)))


def test_unbounded_attention_reaches_every_later_frame():
    m = build(num_layers=1)
    x = mx.random.normal((1, T, IN), key=mx.random.key(1))
    assert changed_outputs(m, x, 0) == list(range(T))


def test_window_longer_than_the_sequence_is_unbounded():
    x = mx.random.normal((2, T, IN), key=mx.random.key(2))
    y_unbounded, _ = build()(x)
    y_window, _ = build(window=T)(x)
    assert mx.allclose(y_window, y_unbounded, atol=1e-6).item()


@pytest.mark.parametrize("window, expected_cache", [(None, T), (4, 4), (100, T)])
def test_cache_holds_at_most_window_keys_and_counts_frames(window, expected_cache):
    m = build(window=window)
    x = mx.random.normal((2, T, IN), key=mx.random.key(3))
    state = None
    for t in range(T):
        _, state = m(x[:, t : t + 1], state)
        n = t + 1 if window is None else min(t + 1, window)
        assert state["layers"][0]["k"].shape == (2, 2, n, HIDDEN // 2)
    assert state["offset"].item() == T
    for layer in state["layers"]:
        assert layer["k"].shape[2] == layer["v"].shape[2] == expected_cache


def test_positions_matter():
    """RoPE makes attention order-aware: reversing the history changes the last output."""
    m = build(num_layers=1)
    x = mx.random.normal((1, 5, IN), key=mx.random.key(4))
    # last frame fixed, earlier frames reversed
    x_rev = mx.concatenate([x[:, 3::-1], x[:, 4:]], axis=1)
    assert mx.abs(m(x)[0][:, -1] - m(x_rev)[0][:, -1]).max().item() > 1e-4


@pytest.mark.parametrize(
    "opts, word",
    [
        (dict(num_heads=3), "num_heads"),
        (dict(num_heads=HIDDEN), "heads of at least 2 features"),  # one feature per head: RoPE has no pair
        (dict(window=0), "window"),
        (dict(window=2.5), "window"),
        (dict(num_layers=0), "num_layers"),
        (dict(ffn_expand=0), "ffn_expand"),
    ],
)
def test_bad_options_are_value_errors_naming_the_option(opts, word):
    with pytest.raises(ValueError, match=word):
        SqueezedAttention(IN, HIDDEN, IN, linear_groups=2, **{"num_heads": 2, **opts})


def test_bad_offset_in_state_is_a_value_error():
    m = build()
    _, state = m(mx.zeros((1, 3, IN)))
    with pytest.raises(ValueError, match=r"state\['offset'\]"):
        m(mx.zeros((1, 3, IN)), {**state, "offset": 3.0})
