# Import dfnet4 before any test module imports mlx.core: the whole suite then runs MLX on the BLAS
# users get (OpenBLAS through dfnet4's shim on Linux, docs/blas.md), without the import-order warning.
import dfnet4  # noqa: F401
import mlx.core as mx
import pytest

# Devices. On a Mac MLX's default device is the GPU; here every test states where it runs:
# - a test that takes the `device` fixture runs once per device: `cpu` always, `gpu` where MLX has a
#   Metal GPU (elsewhere that case is reported as skipped, with the reason). The parity tests of the
#   fused ops and of the models do, so on a Mac the Metal kernels are checked against the pure-MLX
#   reference on the GPU;
# - every other test runs on the CPU, on every machine: what was verified on Linux is what a Mac
#   runs, and the CPU-only facts they rely on (float64, thread counts, CPU allocator behaviour) hold;
# - `@pytest.mark.cpu_only("why")` says why a case cannot run on the GPU (e.g. float64: Metal has
#   no double); it is refused together with `device`.
METAL = mx.metal.is_available()
NO_GPU = "no Metal GPU (mx.metal.is_available() is False): gpu cases run on Apple silicon only"
DEVICES = [
    pytest.param(mx.cpu, id="cpu"),
    pytest.param(mx.gpu, id="gpu", marks=pytest.mark.skipif(not METAL, reason=NO_GPU)),
]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cpu_only(reason): runs on the CPU only, for the given reason (tests/conftest.py)")


@pytest.fixture(params=DEVICES)
def device(request):
    """MLX's default device for this test: each available device in turn (`cpu`, `gpu`)."""
    return request.param


@pytest.fixture(autouse=True)
def _default_device(request):
    wanted = request.getfixturevalue("device") if "device" in request.fixturenames else mx.cpu
    marker = request.node.get_closest_marker("cpu_only")
    if marker is not None:
        if "device" in request.fixturenames:
            raise pytest.UsageError(f"{request.node.nodeid}: cpu_only and the device fixture contradict")
        if not marker.args:
            raise pytest.UsageError(f"{request.node.nodeid}: cpu_only needs a reason")
    previous = mx.default_device()
    mx.set_default_device(wanted)
    try:
        yield
    finally:
        mx.set_default_device(previous)
