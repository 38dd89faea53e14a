"""Access to the repository's tools/ scripts from the tests, and the rule for tests that need
Debian's clang-19: skipped where it is not installed, unless DFNET4_REQUIRE_TOOLCHECKS=1 (CI sets
it, so there a missing compiler fails instead of hiding the checks)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))


def require(program: str, install: str):
    """A pytest mark: skip (or, in CI, fail) when `program` is not on PATH."""
    if shutil.which(program):
        return pytest.mark.skipif(False, reason="")
    if os.environ.get("DFNET4_REQUIRE_TOOLCHECKS") == "1":
        raise RuntimeError(f"{program} is required (DFNET4_REQUIRE_TOOLCHECKS=1): {install}")
    return pytest.mark.skip(reason=f"{program} is not installed ({install}); CI runs these checks")
