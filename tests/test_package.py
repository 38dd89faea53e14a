import mlx.core as mx

import dfnet4
from dfnet4 import _extension


def test_extension_loads_and_reports_backends():
    ext = _extension.load()
    info = ext.build_info()
    assert info["cpu"] is True
    assert isinstance(info["metal"], bool)
    assert dfnet4.__version__


def test_grouped_linear_matches_per_group_matmul():
    from dfnet4.backbones.base import GroupedLinear

    lin = GroupedLinear(12, 8, groups=4)
    x = mx.random.normal((2, 5, 12))
    y = lin(x)
    w = lin.weight
    expected = mx.concatenate([x[..., 3 * g : 3 * g + 3] @ w[g] for g in range(4)], axis=-1)
    assert y.shape == (2, 5, 8)
    assert mx.allclose(y, expected, atol=1e-6).item()
