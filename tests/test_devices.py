"""The suite's device rules (tests/conftest.py): `device` runs a test on each available device and
reports the missing ones as skipped with the reason; every other test runs on the CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest
from conftest import METAL, NO_GPU

import dfnet4


def test_device_fixture_sets_the_default_device(device):
    assert mx.default_device() == device


def test_a_test_without_the_fixture_runs_on_the_cpu():
    assert mx.default_device() == mx.cpu


@pytest.mark.cpu_only("checks the marker itself")
def test_cpu_only_runs_on_the_cpu():
    assert mx.default_device() == mx.cpu


def test_missing_devices_are_reported_as_skipped_and_the_rules_are_enforced(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(
        "import mlx.core as mx\nimport pytest\n\n"
        "def test_runs(device):\n    assert mx.default_device() == device\n\n"
        "@pytest.mark.cpu_only('float64')\ndef test_contradiction(device):\n    pass\n\n"
        "@pytest.mark.cpu_only\ndef test_no_reason():\n    pass\n")
    package_parent = str(Path(dfnet4.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    out = done.stdout + done.stderr
    assert "cpu_only and the device fixture contradict" in out
    assert "cpu_only needs a reason" in out
    if METAL:
        assert "2 passed, 3 errors" in out, out
    else:  # test_runs[gpu] and test_contradiction[gpu] are skipped, with the reason
        assert "1 passed, 2 skipped, 2 errors" in out and NO_GPU in out, out
