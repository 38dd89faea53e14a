"""tools/metal_rules_check.py: the real kernel sources pass Metal's language rules, and each kind
of mistake Apple's compiler rejects is caught, at the file and line where it was made.

Each seeded defect is one edit of the real flattened source (the text a Mac compiles), so the
check is exercised on the kernels as they are, not on toy examples."""

from __future__ import annotations

import re

import pytest
from toolchecks import ROOT, require

import metal_embed
import metal_rules_check

pytestmark = require("clang++-19", "apt-get install clang-19")


@pytest.fixture(scope="module")
def sources():
    return metal_embed.flatten_all(ROOT)


def _check(tmp_path, name, text):
    return metal_rules_check.check_source(name, text, tmp_path)


def test_every_kernel_source_passes(tmp_path, sources):
    for name, text in sources.items():
        assert _check(tmp_path, name, text) == [], name


def test_the_emulators_test_kernels_pass_too(tmp_path):
    # A wider corpus for the stand-in metal_stdlib (vectors and their constructors, half, atomics,
    # threadgroup buffers, every SIMD-group function, program-scope constants): it must not reject
    # what Metal accepts.
    text = metal_embed.flatten(ROOT / "metal/emu/selftest/emu_selftest.metal", ROOT, [ROOT / "csrc"])
    assert _check(tmp_path, "emu_selftest", text) == []


# (library, text in the flattened source, replacement, file:line of the mistake, message)
SEEDED = {
    "pointer without an address space": (
        "gru", "  DF_DEVICE const T* wr = Wh + (long)j * H;", "  const T* wr = Wh + (long)j * H;",
        "csrc/kernels/gru_fwd.h:44", r"'wr' has type 'const __generic float \*.*without an address space"),
    "reference without an address space": (
        "gru", "    DF_THREAD T& pr, DF_THREAD T& pz, DF_THREAD T& pn) {",
        "    T& pr, DF_THREAD T& pz, DF_THREAD T& pn) {",
        "csrc/kernels/gru_fwd.h:40", r"'pr' has type '__generic float &.*without an address space"),
    "device pointer where a thread one is expected": (
        "selective_scan", "      k_y[k] = hsum<T, MAXN>(ch);", "      k_y[k] = hsum<T, MAXN>(out);",
        "csrc/kernels/selective_scan_fwd.h:96", r"no matching function for call to 'hsum'.*__global"),
    "write through a constant": (
        "causal_conv", "  const dfk::ConvParams p = params;", "  const dfk::ConvParams p = params; params.width = 3;",
        "metal/causal_conv.metal:18", r"read-only variable is not assignable"),
    "double": (
        "gru", "  T dn = dh * (T(1) - z);", "  double dn = dh * (T(1) - z);",
        "csrc/kernels/gru_bwd.h:22", r"'double'.*Metal has no double"),
    "threadgroup variable outside kernel scope": (
        "gru", "  T p = T(0);\n  for (int c = 0; c < 3 * H; ++c)",
        "  DF_THREADGROUP float tile[32]; T p = T(0);\n  for (int c = 0; c < 3 * H; ++c)",
        "csrc/kernels/gru_bwd.h:41", r"local address space.*threadgroup variables only in a kernel"),
    "mutable program-scope variable": (
        "gru", "namespace dfk {\n\n// One hidden unit", "namespace dfk {\nfloat scratch[4];\n// One hidden unit",
        "csrc/kernels/gru_fwd.h:14", r"program scope variable must reside in constant address space"),
    "recursion": (
        "gru", "  return p;\n}", "  return j < 0 ? gru_backward_wh_sum<T>(dgh_next, Wh, H, j + 1) : p;\n}",
        "csrc/kernels/gru_bwd.h:40", r"recursion \(gru_backward_wh_sum -> gru_backward_wh_sum\)"),
    "std:: call": (
        "gru", "  hs[row * H + j] = o.h;", "  hs[row * H + j] = std::max(o.h, T(0));",
        "csrc/kernels/gru_fwd.h:64", r"undeclared identifier 'std'.*no C\+\+ standard library"),
    "function missing from metal_stdlib": (
        "gru", "  static DF_INLINE T eval(T x) { return 1.0f - 2.0f / (Exp<T>::eval(2.0f * x) + 1.0f); }",
        "  static DF_INLINE T eval(T x) { return metal::log1p(x); }",
        "csrc/kernels/fast_math.h:108", r"no member named 'log1p' in namespace 'metal'.*not in metal_stdlib"),
    "lambda": (
        "causal_conv", "  const dfk::ConvParams p = params;",
        "  const dfk::ConvParams p = params; auto twice = [](int v) { return 2 * v; };",
        "metal/causal_conv.metal:18", r"lambda expression is not supported by Metal"),
    "virtual function": (
        "gru", "struct GruCellOut {\n  T r, z, n, h;", "struct GruCellOut {\n  T r, z, n, h; virtual void f() {}",
        "csrc/kernels/gru_fwd.h:18", r"virtual"),
    "include left unresolved": (
        "gru", "#include <metal_stdlib>", "#include <metal_stdlib>\n#include <cmath>",
        "metal/gru.metal", r"'cmath' file not found"),
}


@pytest.mark.parametrize("kind", list(SEEDED))
def test_seeded_defect_is_caught_where_it_was_made(tmp_path, sources, kind):
    library, old, new, where, message = SEEDED[kind]
    text = sources[library]
    assert text.count(old) >= 1, f"seed no longer applies: {old!r}"
    findings = _check(tmp_path, library, text.replace(old, new, 1))
    assert findings, f"{kind}: not caught"
    matching = [f for f in findings if f.where.startswith(where) and re.search(message, f.message)]
    assert matching, f"{kind}: expected {where}: /{message}/, got:\n" + "\n".join(map(str, findings))


def test_a_correct_edit_stays_accepted(tmp_path, sources):
    # The seeds' sites accept the same edit made correctly: what fails above is the mistake only.
    ok = sources["gru"].replace("  T dn = dh * (T(1) - z);", "  float dn = dh * (T(1) - z);", 1)
    ok = ok.replace("  DF_DEVICE const T* wr = Wh + (long)j * H;", "  device const T* wr = Wh + (long)j * H;", 1)
    assert _check(tmp_path, "gru", ok) == []


def test_cli_checks_every_wrapper(capsys):
    assert metal_rules_check.main(["--root", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: ok" in out for name in ("selective_scan", "causal_conv", "gru"))
