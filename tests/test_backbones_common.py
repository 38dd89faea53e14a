"""Contract tests every backbone must pass: registry, shapes, causality, streaming == offline,
gradients to every parameter, bad input. Parametrised over backbone configurations; add a name to
CONFIGS to cover a new backbone."""

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

from dfnet4.backbones import Squeezed, create, names

# Small but non-trivial: several heads / groups, two layers, a window shorter than the sequence.
CONFIGS = {
    "mamba": ("mamba", dict(fused=False, d_state=4, expand=2)),
    # the fused scan needs the compiled extension, as the package does (tests/test_package.py)
    "mamba-fused": ("mamba", dict(fused=True, d_state=4, expand=2)),
    "attention": ("attention", dict(num_heads=4)),
    "attention-window": ("attention", dict(num_heads=4, window=3)),
}
IN, HIDDEN, OUT, T = 16, 32, 24, 13

# Streaming and offline run the same float32 ops over the same numbers, but attention reduces over
# a different number of keys per call and may sum in a different order; 1e-5 absolute is ~100 ulp
# of outputs of size ~1 and far below any real state-handling error (those are O(0.1), see
# test_dropping_the_state_changes_the_output).
STREAM_ATOL = 1e-5


def build(config, output_size=OUT, **extra):
    name, opts = CONFIGS[config]
    mx.random.seed(7)
    m = create(name, IN, HIDDEN, output_size, linear_groups=4, **{**opts, **extra})
    mx.eval(m.parameters())
    return m


def inputs(batch=2, time=T, seed=3):
    return mx.random.normal((batch, time, IN), key=mx.random.key(seed))


def run_chunks(m, x, sizes):
    assert sum(sizes) == x.shape[1]
    ys, state, t = [], None, 0
    for n in sizes:
        y, state = m(x[:, t : t + n], state)
        ys.append(y)
        t += n
    return mx.concatenate(ys, axis=1), state


@pytest.fixture(params=list(CONFIGS))
def config(request):
    return request.param


def test_registry_creates_the_registered_class(config):
    name, _ = CONFIGS[config]
    m = build(config)
    assert name in names()
    assert isinstance(m, Squeezed) and m.backbone_name == name


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as err:
        create("lstm", IN, HIDDEN, OUT)
    msg = str(err.value)
    assert "'lstm'" in msg
    for name in {n for n, _ in CONFIGS.values()}:
        assert name in msg


@pytest.mark.parametrize("output_size, skip", [(OUT, False), (None, False), (IN, True)])
def test_output_shape(config, output_size, skip):
    m = build(config, output_size=output_size, skip=skip)
    y, state = m(inputs())
    assert y.shape == (2, T, HIDDEN if output_size is None else output_size)
    assert y.dtype == mx.float32
    assert all(isinstance(a, mx.array) for _, a in tree_flatten(state))


def test_causal(config):
    """Changing frame t0 leaves every earlier output untouched and changes the output at t0."""
    m = build(config)
    x = inputs()
    t0 = 6
    x2 = mx.concatenate([x[:, :t0], x[:, t0:] + 1.0], axis=1)
    y1, _ = m(x)
    y2, _ = m(x2)
    assert mx.array_equal(y1[:, :t0], y2[:, :t0]).item()
    assert mx.abs(y1[:, t0] - y2[:, t0]).max().item() > 1e-3


@pytest.mark.parametrize("sizes", [[1] * T, [3, 3, 3, 3, 1], [5, 1, 2, 4, 1], [12, 1]], ids=["ones", "threes", "uneven", "long-then-one"])
def test_streaming_equals_offline(config, sizes):
    m = build(config)
    x = inputs()
    y_off, s_off = m(x)
    y_str, s_str = run_chunks(m, x, sizes)
    assert mx.allclose(y_str, y_off, atol=STREAM_ATOL, rtol=0).item(), mx.abs(y_str - y_off).max()
    # the carried state after streaming is the state after the whole sequence
    for (path, a), (_, b) in zip(tree_flatten(s_str), tree_flatten(s_off)):
        assert a.shape == b.shape, path
        assert mx.allclose(a, b, atol=STREAM_ATOL, rtol=0).item(), path


def test_dropping_the_state_changes_the_output(config):
    """Guards the streaming test: without the carried state the second chunk comes out different."""
    m = build(config)
    x = inputs()
    y_off, _ = m(x)
    y_fresh, _ = m(x[:, 7:])
    assert mx.abs(y_fresh - y_off[:, 7:]).max().item() > 1e-2


def test_state_continues_across_batches_independently(config):
    """Batch rows do not mix: row 1 streamed alone equals row 1 of the batched stream."""
    m = build(config)
    x = inputs()
    y_all, _ = run_chunks(m, x, [4, 9])
    y_one, _ = run_chunks(m, x[1:2], [4, 9])
    assert mx.allclose(y_one, y_all[1:2], atol=STREAM_ATOL, rtol=0).item()


def _loss_and_grads(m, x, sizes):
    w = mx.random.normal((x.shape[0], x.shape[1], m.output_size), key=mx.random.key(11))

    def loss(model):
        y, _ = run_chunks(model, x, sizes)
        return (y * w).sum()

    return nn.value_and_grad(m, loss)(m)


def test_gradients_reach_every_parameter(config):
    m = build(config)
    _, grads = _loss_and_grads(m, inputs(), [T])
    flat = tree_flatten(grads)
    assert {p for p, _ in flat} == {p for p, _ in tree_flatten(m.trainable_parameters())}
    for path, g in flat:
        assert mx.all(mx.isfinite(g)).item(), path
        assert mx.abs(g).max().item() > 0, f"no gradient reaches {path}"


def test_gradients_through_carried_state_equal_offline(config):
    """Chunked training (state carried between chunks, gradient flowing through it) == offline."""
    m = build(config)
    x = inputs()
    l_off, g_off = _loss_and_grads(m, x, [T])
    l_str, g_str = _loss_and_grads(m, x, [5, 1, 7])
    # gradients sum T*OUT products of ~1 terms: 1e-4 relative covers float32 reordering
    assert mx.allclose(l_str, l_off, rtol=1e-5, atol=1e-4).item()
    for (path, a), (_, b) in zip(tree_flatten(g_str), tree_flatten(g_off)):
        assert mx.allclose(a, b, rtol=1e-4, atol=1e-4).item(), (path, mx.abs(a - b).max())


@pytest.mark.parametrize("shape", [(2, T, IN + 1), (T, IN), (1, 2, T, IN)], ids=["features", "rank2", "rank4"])
def test_bad_input_shape_is_a_value_error_naming_x(config, shape):
    m = build(config)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, time, 16\), got"):
        m(mx.zeros(shape))


def test_bad_state_is_a_value_error_naming_state(config):
    m = build(config)
    _, state = m(inputs(batch=2))
    with pytest.raises(ValueError, match="state"):
        m(inputs(batch=3), state)  # state from a batch of 2
    with pytest.raises(ValueError, match="state"):
        m(inputs(), {"wrong": mx.zeros((1,))})


def test_empty_sequence_is_a_value_error_naming_x(config):
    m = build(config)
    with pytest.raises(ValueError, match="x must have at least one frame"):
        m(mx.zeros((2, 0, IN)))
