"""The emulated-Metal test module (dfnet4._metal_emu) for the tests that run the .metal kernels on
the CPU. It is test tooling, built only when asked for (CMake option DFNET4_METAL_EMU: on in
tools/dev_build.sh and .ci/run, off in a plain `pip install .`), and never on a Metal build, which
runs the real kernels. Where it was not built on purpose its tests are skipped, saying so, unless
DFNET4_REQUIRE_METAL_EMU=1 (CI sets it): then a missing module fails. A build that says it carries
the module but cannot import it always fails."""

from __future__ import annotations

import os

import pytest

from dfnet4 import _extension


def load():
    """dfnet4._metal_emu, or a module-level skip with the reason (see the module docstring)."""
    if not _extension.available():
        pytest.skip("dfnet4._ext is not built (tools/dev_build.sh)", allow_module_level=True)
    info = _extension.load().build_info()
    if info.get("metal_emu"):
        from dfnet4 import _metal_emu  # built with the extension: must import

        return _metal_emu
    if info.get("metal"):
        why = "this build has Metal: the real kernels run instead of the emulated ones (Macs build no emulator)"
    else:
        why = ("dfnet4._metal_emu is test tooling and was not built (CMake option DFNET4_METAL_EMU=ON: "
               "tools/dev_build.sh, or pip install . -Ccmake.define.DFNET4_METAL_EMU=ON)")
    if os.environ.get("DFNET4_REQUIRE_METAL_EMU") == "1":
        raise RuntimeError(f"DFNET4_REQUIRE_METAL_EMU=1, but {why}")
    pytest.skip(why, allow_module_level=True)
