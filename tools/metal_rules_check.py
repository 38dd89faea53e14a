#!/usr/bin/env python3
"""Check the Metal kernels under Metal's language rules, on Linux (docs/metal-emulation.md).

What is checked is exactly what a Mac compiles: each metal/<op>.metal flattened with the
csrc/kernels headers it includes (tools/metal_embed.py, the embedded source). clang-19 compiles it
in C++ for OpenCL 2021 mode, with Metal's address spaces mapped onto OpenCL's
(tools/metal_rules/metal_stdlib: device/threadgroup/constant/thread -> global/local/constant/private)
and no include path at all (-nostdinc: an include left unresolved fails). Then:

- the type check: a device pointer passed where a thread (or threadgroup, constant) one is expected,
  a write through a constant pointer, double (fp64 off), a threadgroup variable outside kernel scope
  or a mutable program-scope variable, std::, and any function metal_stdlib does not have
  (undeclared) are compile errors, as in Metal;
- a lint over clang's AST of the same compile: with OpenCL's generic address space on, a pointer or
  reference written without an address space has type `__generic ...`; Metal requires one on every
  pointer and reference. The AST also gives recursion (cycles in the call graph) and the other C++
  the Metal spec excludes (lambdas, virtual functions, derived classes, new/delete, goto,
  dynamic_cast, typeid, exceptions, thread_local).

(The generic address space must be on: without it clang gives classes no usable copy constructor.
One known clang limitation remains and is filtered: its implicit copy/move members cannot copy an
object out of __constant, which Metal does all the time: `const Params p = params;`.)

Diagnostics point at the repository's files (the flattened source carries #line directives).
Usage: metal_rules_check.py [--source FILE ...] (default: every metal/*.metal, flattened here).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metal_embed  # noqa: E402  (the same flattening the build uses)

CLANG = "clang++-19"
SHIM = Path(__file__).resolve().parent / "metal_rules" / "metal_stdlib"
CLANG_FLAGS = ["-x", "clcpp", "-cl-std=clc++2021", "-cl-no-stdinc", "-nostdinc", "-fsyntax-only",
               "-ferror-limit=0", "-Wno-unknown-attributes", "-Xclang",
               "-cl-ext=+__opencl_c_generic_address_space,-__opencl_c_pipes,"
               "-__opencl_c_program_scope_global_variables,-__opencl_c_device_enqueue,"
               "-cl_khr_fp64,-__opencl_c_fp64",
               "-Xclang", "-ast-dump=json"]
METAL_STDLIB_INCLUDE = re.compile(r"^\s*#\s*include\s*<metal_stdlib>")
ATTRIBUTE = re.compile(r"\[\[.*?\]\]", re.S)

# What a clang message in this mode means in Metal's terms.
HINTS = [  # first match wins
    (r"requires cl_khr_fp64", "Metal has no double: use float"),
    (r"non-kernel function variable cannot be declared in local address space|"
     r"program scope variable must reside",
     "Metal: threadgroup variables only in a kernel's own scope (this project passes threadgroup "
     "memory as [[threadgroup(n)]] kernel parameters, docs/metal-emulation.md), and program-scope "
     "variables only in the constant address space"),
    (r"address space|__global|__private|__local|__constant",
     "Metal: pointers and references carry an address space (device, constant, threadgroup, "
     "thread) that must match; __global = device, __local = threadgroup, __private = thread"),
    (r"undeclared identifier 'std'|in namespace 'std'",
     "Metal has no C++ standard library"),
    (r"use of undeclared identifier|no member named .* in namespace 'metal'",
     "not in metal_stdlib (tools/metal_rules/metal_stdlib declares what the Metal spec provides)"),
    (r"file not found", "the Metal source must be self-contained (tools/metal_embed.py)"),
]


@dataclass
class Finding:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def prepare(source: str) -> tuple[str, int]:
    """The text clang checks and where the kernel source starts in it: the shim in place of
    <metal_stdlib> (one file, so AST offsets are unambiguous), attributes blanked (same length, so
    offsets and columns stay put; clang's OpenCL mode rejects Metal's attribute placements)."""
    lines = source.splitlines()
    if not any(METAL_STDLIB_INCLUDE.match(line) for line in lines):
        raise ValueError("the source does not include <metal_stdlib>")
    body = "\n".join("" if METAL_STDLIB_INCLUDE.match(line) else line for line in lines)
    body = ATTRIBUTE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), body)
    head = f'#line 1 "<metal_stdlib>"\n{SHIM.read_text()}\n'
    return head + body + "\n", len(head)


def presumed_lines(text: str) -> list[tuple[str, int]]:
    """(file, line) of each physical line of `text`, following its #line directives."""
    out, name, line = [], "<source>", 1
    directive = re.compile(r'^\s*#\s*line\s+(\d+)(?:\s+"([^"]*)")?')
    for physical in text.split("\n"):
        match = directive.match(physical)
        out.append((name, line))
        if match:
            line, name = int(match[1]), match[2] or name
        else:
            line += 1
    return out


def hint(message: str) -> str:
    for pattern, meaning in HINTS:
        if re.search(pattern, message):
            return f"  [{meaning}]"
    return ""


def _is_constant_copy_limitation(block: list[str]) -> bool:
    """clang's implicit copy/move members cannot read from __constant; Metal copies from constant."""
    notes = [line for line in block[1:] if ": note: candidate" in line]
    return bool(notes) and all(
        re.search(r"implicit (copy|move) (constructor|assignment operator)", n)
        and "address space '__constant'" in n for n in notes)


def diagnostics(stderr: str) -> list[Finding]:
    """The errors of a compile (each with its notes), minus the __constant copy limitation."""
    blocks: list[list[str]] = []
    for line in stderr.splitlines():
        if re.match(r"^.*?:\d+:\d+: (fatal )?error: ", line):
            blocks.append([line])
        elif blocks and ": note: " in line:
            blocks[-1].append(line)
    findings: dict[tuple[str, str], Finding] = {}  # one per place (templates repeat them)
    for block in blocks:
        if _is_constant_copy_limitation(block):
            continue
        match = re.match(r"^(.*?:\d+:\d+): (?:fatal )?error: (.*)$", block[0])
        message = match[2]
        reasons = [n.split(": note: ", 1)[1] for n in block[1:] if ": note: candidate" in n]
        if reasons:  # why the overload did not match: usually the address space
            message += f" ({reasons[0]})"
        findings.setdefault((match[1], message), Finding(match[1], message + hint(message)))
    return list(findings.values())


# ---- pass B: the AST lint ---------------------------------------------------------------------------

DECL_KINDS = {"VarDecl", "ParmVarDecl", "FieldDecl", "FunctionDecl", "CXXMethodDecl",
              "TypedefDecl", "TypeAliasDecl"}
FUNCTION_KINDS = {"FunctionDecl", "CXXMethodDecl", "CXXConstructorDecl", "CXXDestructorDecl",
                  "CXXConversionDecl"}
EXCLUDED = {  # C++ the Metal Shading Language spec lists as not supported
    "LambdaExpr": "a lambda expression",
    "CXXNewExpr": "new", "CXXDeleteExpr": "delete",
    "CXXDynamicCastExpr": "dynamic_cast", "CXXTypeidExpr": "typeid",
    "CXXThrowExpr": "throw", "CXXTryStmt": "try/catch",
    "GotoStmt": "goto", "IndirectGotoStmt": "goto",
    "CXXNoexceptExpr": "the noexcept operator",
}


def _offset(node: dict) -> int | None:
    loc = node.get("loc") or {}
    loc = loc.get("expansionLoc", loc)
    if "offset" in loc:
        return loc["offset"]
    begin = (node.get("range") or {}).get("begin") or {}
    begin = begin.get("expansionLoc", begin)
    return begin.get("offset")


def _declared_type(node: dict) -> str:
    qual = (node.get("type") or {}).get("qualType", "")
    if node["kind"] in FUNCTION_KINDS:  # the return type only: parameters are ParmVarDecls
        depth = 0
        for i, ch in enumerate(qual):
            if ch == "(" and depth == 0 and i > 0:
                return qual[:i]
            depth += ch == "("
            depth -= ch == ")"
        return qual
    return qual


def ast_lint(ast: dict, path: Path, text: str, user_from: int) -> list[Finding]:
    line_starts = [0]
    for line in text.split("\n"):
        line_starts.append(line_starts[-1] + len(line) + 1)
    presumed = presumed_lines(text)

    def where(offset: int | None) -> str:
        if offset is None:
            return str(path)
        lo, hi = 0, len(line_starts) - 1
        while lo < hi - 1:  # the physical line holding `offset`
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if line_starts[mid] <= offset else (lo, mid)
        name, line = presumed[lo]
        return f"{name}:{line}:{offset - line_starts[lo] + 1}"

    findings: dict[tuple[str, str], Finding] = {}
    calls: dict[str, set[str]] = {}
    names: dict[str, tuple[str, int | None]] = {}

    def add(offset, message):
        f = Finding(where(offset), message)
        findings.setdefault((f.where, f.message), f)

    def walk(node: dict, function: str | None, implicit: bool = False) -> None:
        kind = node.get("kind", "")
        offset = _offset(node)
        implicit = implicit or bool(node.get("isImplicit"))  # compiler-made members: not ours
        ours = offset is not None and offset >= user_from and not implicit
        if kind in FUNCTION_KINDS and node.get("id"):
            names[node["id"]] = (node.get("name", "?"), offset)
            if any(c.get("kind") == "CompoundStmt" for c in node.get("inner", [])):
                function = node["id"]
                calls.setdefault(function, set())
        if ours and kind in DECL_KINDS:
            if "__generic" in _declared_type(node):
                add(offset, f"'{node.get('name', '')}' has type '{_declared_type(node).strip()}': "
                            "a pointer or reference without an address space (Metal requires "
                            "device, constant, threadgroup or thread)")
        if ours and kind in EXCLUDED:
            add(offset, f"{EXCLUDED[kind]} is not supported by Metal")
        if ours and kind == "CXXMethodDecl" and node.get("virtual"):
            add(offset, f"virtual function '{node.get('name')}': not supported by Metal")
        if ours and kind == "CXXRecordDecl" and node.get("bases"):
            add(offset, f"'{node.get('name')}' derives from another class: not supported by Metal")
        if ours and kind == "VarDecl" and node.get("tls"):
            add(offset, f"thread_local '{node.get('name')}': not supported by Metal")
        if function is not None:
            ref = node.get("referencedDecl") or {}
            if kind == "DeclRefExpr" and ref.get("kind") in FUNCTION_KINDS:
                calls[function].add(ref["id"])
            if kind == "MemberExpr" and node.get("referencedMemberDecl"):
                calls[function].add(node["referencedMemberDecl"])
        for child in node.get("inner", []):
            walk(child, function, implicit)

    walk(ast, None)
    for cycle in _cycles(calls):
        name, offset = names.get(cycle[0], ("?", None))
        if offset is not None and offset < user_from:
            continue
        chain = " -> ".join(names.get(c, ("?", None))[0] for c in cycle + [cycle[0]])
        add(offset, f"recursion ({chain}): Metal does not support recursive calls")
    return list(findings.values())


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component that has one (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(list(reversed(component)))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def check_source(name: str, source: str, work: Path) -> list[Finding]:
    text, user_from = prepare(source)
    path = work / f"{name}.clcpp"
    path.write_text(text)
    done = subprocess.run([CLANG, *CLANG_FLAGS, str(path)], capture_output=True, text=True)
    findings = diagnostics(done.stderr)
    try:
        ast = json.loads(done.stdout)
    except json.JSONDecodeError:
        if not findings:
            findings.append(Finding(str(path), "clang failed:\n" + done.stderr.strip()))
        return findings
    return findings + ast_lint(ast, path, text, user_from)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metal_rules_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--source", type=Path, action="append",
                        help="an already flattened Metal source to check (repeatable); default: "
                             "every metal/*.metal, flattened by tools/metal_embed.py")
    args = parser.parse_args(argv)
    try:
        sources = ({p.stem: p.read_text() for p in args.source} if args.source
                   else metal_embed.flatten_all(args.root))
    except metal_embed.EmbedError as error:
        print(f"metal_rules_check.py: error: {error}", file=sys.stderr)
        return 1
    failed = False
    with tempfile.TemporaryDirectory(prefix="metal_rules_") as tmp:
        for name, source in sources.items():
            try:
                findings = check_source(name, source, Path(tmp))
            except ValueError as error:
                findings = [Finding(name, str(error))]
            for f in findings:
                print(f"metal_rules_check.py: {name}: {f}", file=sys.stderr)
            failed |= bool(findings)
            print(f"{name}: {'FAILED' if findings else 'ok'} (Metal language rules)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
