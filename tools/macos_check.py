#!/usr/bin/env python3
"""Compile the macOS build's translation units and check the MLX symbols they need (from Linux).

Run by tools/macos_check.sh, which prepares the macOS MLX SDK (from the mlx-metal wheel), the
clang-19 cross flags and a CMake configure of this repository against that SDK. This script:

1. compiles every translation unit of the dfnet4 extension listed in that configure's
   compile_commands.json (csrc/*.cpp and the generated embedded-kernel-source TU) to an aarch64
   object, exactly with the compile line CMake wrote (MLX's -D_METAL_ -DACCELERATE_NEW_LAPACK, its
   include directories, our flags);
2. lists the mlx::core symbols those objects leave undefined and checks that the macOS
   libmlx.dylib exports each of them (only MLX_API symbols are exported; anything else links on
   macOS but fails at import). int64_t is `long` on Linux and `long long` on Darwin, so names are
   compared demangled, with `long long` read as `long`;
3. with --self-check, proves that 1 and 2 have teeth: a seeded wrong MLX Metal API call must fail to
   compile, and a seeded call of an MLX function that is not exported must be reported.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

NM = "llvm-nm-19"
CXXFILT = "llvm-cxxfilt-19"
MLX_NAMESPACE = "mlx::core"
GENERATED_TU = "metal_kernel_sources.cpp"


@dataclass
class Unit:
    source: Path
    command: list[str]
    directory: Path
    obj: Path


def load_units(build_dir: Path, root: Path) -> list[Unit]:
    """The extension's translation units (ours and the generated one; not nanobind's own)."""
    entries = json.loads((build_dir / "compile_commands.json").read_text())
    units = []
    for e in entries:
        source = Path(e["file"]).resolve()
        ours = source.is_relative_to(root / "csrc") or source.is_relative_to(build_dir / "generated")
        if not ours:
            continue
        command = e.get("arguments") or shlex.split(e["command"])
        directory = Path(e["directory"])
        obj = directory / command[command.index("-o") + 1]
        units.append(Unit(source, command, directory, obj))
    return units


def check_coverage(units: list[Unit], root: Path) -> list[str]:
    """Problems with the set of units: every csrc/*.cpp and the generated TU must be compiled."""
    compiled = {u.source for u in units}
    wanted = {p.resolve() for p in (root / "csrc").glob("*.cpp")}
    problems = [f"the macOS configure does not compile {p.relative_to(root)}"
                for p in sorted(wanted - compiled)]
    if not any(u.source.parent.name == "generated" and u.source.name == GENERATED_TU for u in units):
        problems.append(f"the macOS configure does not compile the generated {GENERATED_TU}")
    return problems


def compile_unit(unit: Unit, source: Path | None = None, obj: Path | None = None):
    """Run the unit's compile line (optionally on another source / to another object)."""
    command = list(unit.command)
    if source is not None:
        command[command.index("-c") + 1] = str(source)
    if obj is not None:
        command[command.index("-o") + 1] = str(obj)
    out = Path(command[command.index("-o") + 1])
    (out if out.is_absolute() else unit.directory / out).parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(command, cwd=unit.directory, capture_output=True, text=True)


def _nm(args: list[str]) -> list[str]:
    done = subprocess.run([NM, *args], capture_output=True, text=True, check=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def demangle(names: list[str]) -> list[str]:
    if not names:
        return []
    done = subprocess.run([CXXFILT], input="\n".join(names) + "\n", capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


def comparable(demangled: str) -> str:
    """One spelling for Linux and Darwin: int64_t/uint64_t are long on one, long long on the other."""
    return re.sub(r"\blong long\b", "long", demangled)


def mlx_symbols_needed(objects: list[Path]) -> dict[str, str]:
    """{comparable demangled name: mangled name} of mlx::core symbols the objects need from libmlx."""
    undefined = set()
    defined = set()
    for obj in objects:
        undefined.update(_nm(["-u", "--just-symbol-name", str(obj)]))
        defined.update(_nm(["--defined-only", "--just-symbol-name", str(obj)]))
    names = sorted(undefined - defined)
    return {comparable(d): m for m, d in zip(names, demangle(names)) if MLX_NAMESPACE in d}


def dylib_exports(dylib: Path) -> set[str]:
    """Comparable demangled names of the dylib's exported symbols (Mach-O names carry a '_')."""
    names = [n[1:] if n.startswith("__Z") else n
             for n in _nm(["-gU", "--just-symbol-name", str(dylib)])]
    return {comparable(d) for d in demangle(names)}


def missing_symbols(objects: list[Path], dylib: Path) -> tuple[dict[str, str], list[str]]:
    needed = mlx_symbols_needed(objects)
    exported = dylib_exports(dylib)
    return needed, sorted(name for name in needed if name not in exported)


def compile_all(units: list[Unit], jobs: int) -> list[tuple[Unit, str]]:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(compile_unit, units))
    return [(u, r.stderr) for u, r in zip(units, results) if r.returncode != 0]


# ---- self-check: seeded defects ------------------------------------------------------------------

# (what it seeds, file, text replaced, replacement, what must be reported)
SEEDED_API_ERROR = ("a misspelt CommandEncoder method", "gru_metal.cpp",
                    "enc.set_compute_pipeline_state(", "enc.set_compute_pipeline(",
                    "no member named 'set_compute_pipeline'")
SEEDED_UNEXPORTED = ("a call of MLX's metal::get_command_encoders(), declared in device.h but "
                     "not MLX_API", "gru_metal.cpp",
                     "auto& enc = mx::metal::get_command_encoder(stream());",
                     "auto& enc = mx::metal::get_command_encoders().at(stream().index);",
                     "mlx::core::metal::get_command_encoders()")


def _seed(units: list[Unit], work: Path, seeded) -> tuple[Unit, Path, Path]:
    what, name, old, new, _ = seeded
    unit = next(u for u in units if u.source.name == name)
    text = unit.source.read_text()
    if old not in text:
        raise SystemExit(f"macos_check: self-check cannot seed {what}: '{old}' is no longer in "
                         f"{name}; update SEEDED_* in tools/macos_check.py")
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"seeded_{name}"
    source.write_text(f'#line 1 "{unit.source}"\n' + text.replace(old, new))
    return unit, source, work / f"seeded_{name}.o"


def self_check(units: list[Unit], work: Path, dylib: Path) -> list[str]:
    failures = []
    unit, source, obj = _seed(units, work, SEEDED_API_ERROR)
    done = compile_unit(unit, source, obj)
    if done.returncode == 0 or SEEDED_API_ERROR[4] not in done.stderr:
        failures.append(f"seeded {SEEDED_API_ERROR[0]} was not reported by the compile step")
    else:
        print(f"self-check: seeded {SEEDED_API_ERROR[0]}: compile error, as it must be")

    unit, source, obj = _seed(units, work, SEEDED_UNEXPORTED)
    done = compile_unit(unit, source, obj)
    if done.returncode != 0:
        failures.append(f"seeded {SEEDED_UNEXPORTED[0]} should compile, but:\n{done.stderr}")
    else:
        _, missing = missing_symbols([obj], dylib)
        if SEEDED_UNEXPORTED[4] not in missing:
            failures.append(f"seeded {SEEDED_UNEXPORTED[0]} was not reported by the symbol step "
                            f"(missing: {missing})")
        else:
            print(f"self-check: seeded {SEEDED_UNEXPORTED[0]}: reported as not exported, as it "
                  "must be")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="macos_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, required=True,
                        help="CMake build dir of the macOS configure (compile_commands.json)")
    parser.add_argument("--dylib", type=Path, required=True, help="the macOS wheel's libmlx.dylib")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--self-check", action="store_true", help="also run the seeded defects")
    args = parser.parse_args(argv)
    root, build_dir = args.root.resolve(), args.build_dir.resolve()

    units = load_units(build_dir, root)
    problems = check_coverage(units, root)
    if problems:
        for p in problems:
            print(f"macos_check: error: {p}", file=sys.stderr)
        return 1
    names = sorted(str(u.source.relative_to(root) if u.source.is_relative_to(root) else
                       Path("<build>") / u.source.relative_to(build_dir)) for u in units)
    print(f"compiling {len(units)} translation units for macOS arm64 (clang-19, MLX's macOS "
          f"headers): " + ", ".join(names))
    failed = compile_all(units, args.jobs)
    for unit, stderr in failed:
        print(f"macos_check: error: {unit.source} does not compile for macOS:\n{stderr}",
              file=sys.stderr)
    if failed:
        return 1

    needed, missing = missing_symbols([u.obj for u in units], args.dylib)
    print(f"{len(needed)} mlx::core symbols referenced; checked against {args.dylib.name}'s exports")
    for name in missing:
        print(f"macos_check: error: libmlx.dylib does not export {name} (mangled "
              f"{needed[name]}); it is not MLX_API, so the extension would fail at import on "
              "macOS", file=sys.stderr)
    if missing:
        return 1

    if args.self_check:
        failures = self_check(units, build_dir / "self-check", args.dylib)
        for f in failures:
            print(f"macos_check: self-check failed: {f}", file=sys.stderr)
        if failures:
            return 1
    print("macOS host check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
