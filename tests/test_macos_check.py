"""tools/macos_check.py, the parts that need no macOS SDK: which translation units it compiles,
and how it compares the symbols our objects need with what libmlx exports (Linux and Darwin
mangle int64_t differently). The whole check (tools/macos_check.sh, ~2 min) runs in CI, with its
seeded-defect self-check."""

from __future__ import annotations

import json
import subprocess

import pytest
from toolchecks import ROOT, require

import macos_check


def test_long_and_long_long_compare_equal():
    linux = "mlx::core::metal::CommandEncoder::set_input_array(mlx::core::array const&, int, long)"
    darwin = "mlx::core::metal::CommandEncoder::set_input_array(mlx::core::array const&, int, long long)"
    assert macos_check.comparable(linux) == macos_check.comparable(darwin)
    assert macos_check.comparable("f(unsigned long long)") == macos_check.comparable("f(unsigned long)")
    assert macos_check.comparable("f(int)") != macos_check.comparable("f(long)")


def _compile_commands(tmp_path, files):
    build = tmp_path / "build"
    build.mkdir()
    entries = [{"directory": str(build), "file": str(f),
                "command": f"clang++ -o obj/{f.name}.o -c {f}"} for f in files]
    (build / "compile_commands.json").write_text(json.dumps(entries))
    return build


def test_units_are_ours_and_coverage_is_checked(tmp_path):
    csrc = sorted((ROOT / "csrc").glob("*.cpp"))
    nanobind = tmp_path / "nanobind" / "nb_func.cpp"
    generated = tmp_path / "build" / "generated" / "metal_kernel_sources.cpp"
    build = _compile_commands(tmp_path, csrc + [nanobind, generated])
    units = macos_check.load_units(build, ROOT)
    assert {u.source for u in units} == {p.resolve() for p in csrc} | {generated.resolve()}
    assert macos_check.check_coverage(units, ROOT) == []
    problems = macos_check.check_coverage([u for u in units if u.source.name != "gru_metal.cpp"
                                           and u.source != generated.resolve()], ROOT)
    assert any("csrc/gru_metal.cpp" in p for p in problems)
    assert any("generated metal_kernel_sources.cpp" in p for p in problems)


def test_self_check_seeds_still_apply():
    # The script's seeded defects edit real files; a refactor must not quietly disarm them.
    for _, name, old, _, _ in (macos_check.SEEDED_API_ERROR, macos_check.SEEDED_UNEXPORTED):
        assert old in (ROOT / "csrc" / name).read_text(), (name, old)


@require("clang++-19", "apt-get install clang-19")
@require("llvm-nm-19", "apt-get install llvm-19")
def test_symbol_check_finds_what_the_library_does_not_export(tmp_path):
    # A stand-in "libmlx" defining two mlx::core functions with Darwin's int64_t (long long), and
    # an object of ours that needs them with Linux's (long) plus one the library lacks.
    (tmp_path / "lib.cpp").write_text(
        "namespace mlx::core { void exported(long long) {} void also(int) {} }\n")
    (tmp_path / "ours.cpp").write_text(
        "namespace mlx::core { void exported(long); void also(int); void hidden(long); }\n"
        "void use() { mlx::core::exported(1); mlx::core::also(2); mlx::core::hidden(3); }\n")
    for name in ("lib", "ours"):
        subprocess.run(["clang++-19", "-c", str(tmp_path / f"{name}.cpp"), "-o",
                        str(tmp_path / f"{name}.o")], check=True)
    needed, missing = macos_check.missing_symbols([tmp_path / "ours.o"], tmp_path / "lib.o")
    assert set(needed) == {"mlx::core::exported(long)", "mlx::core::also(int)",
                           "mlx::core::hidden(long)"}
    assert missing == ["mlx::core::hidden(long)"]
