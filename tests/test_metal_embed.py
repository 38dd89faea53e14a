"""tools/metal_embed.py: the Metal source a Mac compiles at first use is the .metal wrappers with
their csrc/kernels headers inlined, complete (no include left unresolved), ASCII, and exactly what
this build of the extension carries."""

from __future__ import annotations

import re

import pytest
from toolchecks import ROOT

import metal_embed
from dfnet4 import _extension

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


@pytest.fixture(scope="module")
def sources():
    return metal_embed.flatten_all(ROOT)


def test_one_library_per_wrapper(sources):
    assert set(sources) == {p.stem for p in (ROOT / "metal").glob("*.metal")}
    assert set(sources) >= {"selective_scan", "causal_conv", "gru"}


def test_every_header_is_inlined_once_and_only_metal_stdlib_stays(sources):
    for name, text in sources.items():
        assert text.isascii(), name
        included = INCLUDE.findall(text)
        # <metal_stdlib>, and <cmath> on the host side of csrc/kernels/defines.h's #if
        assert set(included) <= {"metal_stdlib", "cmath"}, (name, included)
        assert text.count('#line 1 "csrc/kernels/defines.h"') == 1, name
        assert "#pragma once" not in text
        assert f'#line 1 "metal/{name}.metal"' in text


def test_line_directives_map_back_to_the_files(sources):
    # After `#line N "file"`, the next line of the flattened text is line N of that file.
    text = sources["gru"].split("\n")
    files = {}
    for i, line in enumerate(text):
        m = re.match(r'#line (\d+) "([^"]+)"', line)
        if m and i + 1 < len(text) and not text[i + 1].startswith("#line"):
            path = ROOT / m[2]
            original = files.setdefault(path, path.read_text().split("\n"))
            assert text[i + 1] == original[int(m[1]) - 1] or text[i + 1] == "", (line, text[i + 1])


@pytest.mark.skipif(not _extension.available(), reason="dfnet4._ext is not built (tools/dev_build.sh)")
def test_the_extension_carries_exactly_the_flattened_sources(sources):
    # The build regenerates the embedded text whenever a wrapper or kernel header changes; a stale
    # or hand-edited embedding would make the Mac compile something the checks never saw.
    assert _extension.load()._metal_kernel_sources() == sources


# ---- the generator refuses what a Mac could not compile -------------------------------------------

def _tree(tmp_path, wrapper: str, headers: dict[str, str]):
    (tmp_path / "metal").mkdir()
    (tmp_path / "metal" / "op.metal").write_text(wrapper)
    for rel, text in headers.items():
        path = tmp_path / "csrc" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


GOOD_WRAPPER = '#include <metal_stdlib>\n#include "kernels/a.h"\nusing namespace metal;\n'


def test_nested_includes_resolve_next_to_the_includer_then_in_csrc(tmp_path):
    root = _tree(tmp_path, GOOD_WRAPPER, {
        "kernels/a.h": '#pragma once\n#include "b.h"\nint a();\n',
        "kernels/b.h": '#pragma once\n#include "kernels/a.h"\nint b();\n'})
    with pytest.raises(metal_embed.EmbedError, match="include cycle"):
        metal_embed.flatten_all(root)
    (root / "csrc/kernels/b.h").write_text('#pragma once\nint b();\n')
    text = metal_embed.flatten_all(root)["op"]
    assert text.index("int b();") < text.index("int a();")


@pytest.mark.parametrize("header, message", [
    ('#include "missing.h"\n', r'csrc/kernels/a\.h:1: cannot resolve #include "missing\.h"'),
    ("#include <cmath>\n", r"csrc/kernels/a\.h:1: #include <cmath> in Metal code"),
    ('#if X\n#include "b.h"\n#endif\n', r"csrc/kernels/a\.h:2: .*inside a preprocessor conditional"),
    ("// caf\u00e9\n", r"csrc/kernels/a\.h:1: non-ASCII"),
    ('const char* s = ")dfnet4_msl";\n', r"raw-string delimiter"),
])
def test_refuses_a_source_a_mac_could_not_compile(tmp_path, header, message):
    root = _tree(tmp_path, GOOD_WRAPPER, {"kernels/a.h": header, "kernels/b.h": "int b();\n"})
    with pytest.raises(metal_embed.EmbedError, match=message):
        metal_embed.flatten_all(root)


def test_cli_writes_the_sources_and_the_cpp(tmp_path, sources):
    assert metal_embed.main(["--root", str(ROOT), "--out-dir", str(tmp_path)]) == 0
    for name, text in sources.items():
        assert (tmp_path / f"{name}.metal").read_text() == text
    cpp = (tmp_path / "metal_kernel_sources.cpp").read_text()
    assert all(f'{{"{name}", R"dfnet4_msl(' in cpp for name in sources)
