#!/usr/bin/env python3
"""Flatten each metal/<op>.metal into one self-contained Metal source and embed them in C++.

The Metal kernels are compiled on the user's Mac at first use, from source text inside the extension
(MLX's metal::Device::get_library(name, builder)), so no Xcode Metal toolchain is needed. This script
makes that text from the real files at build time, so the wrappers and csrc/kernels/*.h stay the one
source of truth:

- every quoted #include is replaced by the header's text, recursively, each header once (the
  headers use #pragma once); includes are searched next to the including file, then in csrc/;
- `#line` directives keep the Metal compiler's messages pointing at the repository's files;
- angle includes are kept: <metal_stdlib> (and other metal_* headers) come with the Metal compiler;
  others may only appear inside a preprocessor conditional (the host side of a shared header);
- the result must be ASCII (MLX hands it to Metal as an ASCII string).

Outputs in --out-dir: <op>.metal for each wrapper (what the checks compile) and
metal_kernel_sources.cpp (the same text as C++ raw strings; see csrc/metal_kernel_sources.h).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s*(?:"([^"]+)"|<([^>]+)>)')
PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\b")
OPENS_CONDITIONAL = re.compile(r"^\s*#\s*if(n?def)?\b")
CLOSES_CONDITIONAL = re.compile(r"^\s*#\s*endif\b")
METAL_HEADER = re.compile(r"^metal_\w+$")
RAW_DELIMITER = "dfnet4_msl"


class EmbedError(Exception):
    """A wrapper cannot be made into one self-contained source (message names file and line)."""


def _resolve(name: str, including: Path, include_dirs: list[Path]) -> Path | None:
    for directory in [including.parent, *include_dirs]:
        candidate = (directory / name).resolve()
        if candidate.is_file():
            return candidate
    return None


def flatten(wrapper: Path, root: Path, include_dirs: list[Path]) -> str:
    """The wrapper's text with every quoted include inlined (see the module docstring)."""
    root = root.resolve()
    out: list[str] = []
    inlined: set[Path] = set()

    def where(path: Path) -> str:
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    def emit(path: Path, stack: tuple[Path, ...]) -> None:
        depth = 0
        out.append(f'#line 1 "{where(path)}"')
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.isascii():
                raise EmbedError(f"{where(path)}:{number}: non-ASCII text (MLX passes kernel "
                                 f"source to Metal as ASCII): {line.strip()!r}")
            if OPENS_CONDITIONAL.match(line):
                depth += 1
            elif CLOSES_CONDITIONAL.match(line):
                depth -= 1
            match = INCLUDE.match(line)
            if PRAGMA_ONCE.match(line):
                out.append("")  # each header is inlined once anyway; keeps the line numbers
            elif match and match[1]:
                header = _resolve(match[1], path, include_dirs)
                if header is None:
                    searched = ", ".join(where(d) for d in [path.parent, *include_dirs])
                    raise EmbedError(f'{where(path)}:{number}: cannot resolve #include "{match[1]}" '
                                     f"(searched {searched})")
                if depth:
                    raise EmbedError(f'{where(path)}:{number}: #include "{match[1]}" inside a '
                                     "preprocessor conditional: the generator inlines each header "
                                     "once, unconditionally; include it at file level")
                if header in stack:
                    raise EmbedError(f"{where(path)}:{number}: include cycle through {where(header)}")
                if header not in inlined:
                    inlined.add(header)
                    emit(header, stack + (header,))
                out.append(f'#line {number + 1} "{where(path)}"')
            elif match and not METAL_HEADER.match(match[2]) and depth == 0:
                raise EmbedError(f"{where(path)}:{number}: #include <{match[2]}> in Metal code: the "
                                 "Metal compiler provides only its own metal_* headers")
            else:
                out.append(line)

    wrapper = wrapper.resolve()
    inlined.add(wrapper)
    emit(wrapper, (wrapper,))
    text = "\n".join(out) + "\n"
    if f"){RAW_DELIMITER}\"" in text:
        raise EmbedError(f'{where(wrapper)}: contains ){RAW_DELIMITER}" (the raw-string delimiter)')
    return text


def wrappers(root: Path) -> list[Path]:
    return sorted((root / "metal").glob("*.metal"))


def flatten_all(root: Path) -> dict[str, str]:
    """Library name (the wrapper's stem) -> flattened source, for every metal/*.metal."""
    include_dirs = [root / "csrc"]
    return {path.stem: flatten(path, root, include_dirs) for path in wrappers(root)}


def cpp_source(sources: dict[str, str]) -> str:
    lines = [
        "// Generated by tools/metal_embed.py from metal/*.metal and the headers they include.",
        "// Do not edit: edit those files (see csrc/metal_kernel_sources.h).",
        '#include "metal_kernel_sources.h"',
        "",
        "namespace dfnet4::metal_kernels {",
        "",
        "const std::vector<Source>& all() {",
        "  static const std::vector<Source> sources = {",
    ]
    for name, text in sources.items():
        lines.append(f'      {{"{name}", R"{RAW_DELIMITER}({text}){RAW_DELIMITER}"}},')
    lines += ["  };", "  return sources;", "}", "", "}  // namespace dfnet4::metal_kernels", ""]
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    # Unchanged outputs keep their time stamps, so the build does not recompile them.
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metal_embed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root (default: this script's parent's parent)")
    parser.add_argument("--out-dir", type=Path, required=True, help="where to write the outputs")
    args = parser.parse_args(argv)
    try:
        sources = flatten_all(args.root)
    except EmbedError as error:
        print(f"metal_embed.py: error: {error}", file=sys.stderr)
        return 1
    if not sources:
        print(f"metal_embed.py: error: no metal/*.metal under {args.root}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        _write_if_changed(args.out_dir / f"{name}.metal", text)
    _write_if_changed(args.out_dir / "metal_kernel_sources.cpp", cpp_source(sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
