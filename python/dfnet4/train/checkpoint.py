"""Atomic, self-validating checkpoints.

A checkpoint is a directory `<run>/checkpoints/step-00000123/` holding
    weights.safetensors     the model parameters (mx.save_safetensors)
    optimizer.safetensors   the optimizer state, flattened
    state.json              step, epoch, data position, RNG state, model + run config, and the
                            SHA-256 and size of both .safetensors files
and `<run>/checkpoints/latest` names the newest one (for people and scripts; loading does not
trust it). Writing goes to a temp directory beside the final one, after checking that the
checkpoint fits on the disk; every file is fsynced, the directory is renamed into place with
os.replace, and only then is `latest` (itself written atomically) updated. A failed write (a full
disk included) removes its temp directory and leaves the earlier checkpoints as they were.
Loading scans every checkpoint newest first and takes the first that passes its recorded sizes
and checksums, whatever `latest` says: a kill between the rename and the `latest` update, or a
damaged newest checkpoint, therefore never loses or misuses a step.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from dfnet4.atomic_io import (DiskFullError, check_free_space, free_bytes, fsync_path, is_disk_full,
                              remove_quietly, remove_stale_temps, write_text_atomic)

FORMAT = "dfnet4-checkpoint"
VERSION = 1
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
LATEST = "latest"
_NAME = re.compile(r"step-(\d{8,})")
# headers of both safetensors files and the state file, on top of the tensors' bytes
_OVERHEAD_BYTES = 1 << 16
# warn when the disk holds fewer than this many more checkpoints after the one being written
LOW_SPACE_CHECKPOINTS = 2


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or damaged."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def estimate_bytes(parameters: dict, optimizer_state: dict) -> int:
    """Disk space one checkpoint of these trees takes (tensor bytes plus headers), before writing."""
    tensors = [v for tree in (parameters, optimizer_state) for _, v in tree_flatten(tree) if isinstance(v, mx.array)]
    return sum(v.nbytes for v in tensors) + 256 * len(tensors) + _OVERHEAD_BYTES


def save(directory: str | os.PathLike, step: int, parameters: dict, optimizer_state: dict,
         state: dict[str, Any], keep: int = 3, warn: Callable[[str], None] | None = None) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, keep the newest `keep`.

    Raises DiskFullError (naming the checkpoint, the bytes needed and available) before writing if
    it cannot fit, or if the disk fills up while writing; the temp directory is then removed and
    the earlier checkpoints are untouched. `warn` is told when fewer than LOW_SPACE_CHECKPOINTS more
    checkpoints would fit after this one.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    needed = estimate_bytes(parameters, optimizer_state)
    available = check_free_space(final, needed, "writing checkpoint")
    if warn is not None and available is not None and available - needed < LOW_SPACE_CHECKPOINTS * needed:
        warn(f"low disk space: {available / 2**20:.1f} MiB free on the disk of {root}, each checkpoint "
             f"needs {needed / 2**20:.1f} MiB")
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    remove_quietly(tmp)
    try:
        tmp.mkdir()
        mx.save_safetensors(str(tmp / WEIGHTS), dict(tree_flatten(parameters)))
        mx.save_safetensors(str(tmp / OPTIMIZER), dict(tree_flatten(optimizer_state)))
        files = {}
        for name in (WEIGHTS, OPTIMIZER):
            fsync_path(tmp / name)
            files[name] = {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
        full_state = {"format": FORMAT, "version": VERSION, "step": int(step), "files": files,
                      "saved_at": time.time(), **state}
        write_text_atomic(tmp / STATE, json.dumps(full_state, indent=1))
        fsync_path(tmp)
        if final.exists():  # the same step saved again: move the old one aside, never delete it first
            old = root / f".tmp-old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            remove_quietly(old)
        else:
            os.replace(tmp, final)
        fsync_path(root)
    except BaseException as exc:
        remove_quietly(tmp)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(final, needed, free_bytes(root), "writing checkpoint") from exc
        raise
    write_text_atomic(root / LATEST, final.name + "\n")
    _prune(root, keep)
    return final


def step_of(path: Path) -> int | None:
    """The step a checkpoint directory's name says, or None for other names."""
    m = _NAME.fullmatch(path.name)
    return int(m.group(1)) if m else None


def _prune(root: Path, keep: int) -> None:
    for old in candidates(root)[keep:] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    remove_stale_temps(root)  # leftovers of writers that were killed


def validate(path: str | os.PathLike) -> dict:
    """Load and check one checkpoint directory; return its state dict or raise CheckpointError."""
    path = Path(path)
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: state file missing or unreadable ({exc})") from exc
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} v{VERSION} checkpoint")
    for name, want in state.get("files", {}).items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{path}: {name} is missing")
        size = f.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(f"{path}: {name} has {size} bytes, the state file recorded {want['bytes']} (truncated write?)")
        if _sha256(f) != want["sha256"]:
            raise CheckpointError(f"{path}: {name} fails its SHA-256 check (damaged file)")
    if set(state.get("files", {})) != {WEIGHTS, OPTIMIZER}:
        raise CheckpointError(f"{path}: the state file does not record both {WEIGHTS} and {OPTIMIZER}")
    if step_of(path) is not None and state.get("step") != step_of(path):
        raise CheckpointError(f"{path}: its state file records step {state.get('step')}")
    return state


def candidates(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint directories, newest (highest step) first. `latest` is not consulted: it may lag
    behind a checkpoint that was renamed into place just before a kill."""
    root = Path(directory)
    found = [(step_of(p), p) for p in root.glob("step-*") if p.is_dir()] if root.is_dir() else []
    return [p for step, p in sorted((x for x in found if x[0] is not None), reverse=True)]


def find_latest_valid(directory: str | os.PathLike, log=print) -> tuple[Path, dict] | None:
    """The newest checkpoint that passes `validate`; rejected ones are reported through `log`."""
    for path in candidates(directory):
        try:
            return path, validate(path)
        except CheckpointError as exc:
            log(f"dfnet4: ignoring invalid checkpoint: {exc}")
    return None


def resolve(path: str | os.PathLike, log=print) -> tuple[Path, dict]:
    """A checkpoint from a user path: a checkpoint dir, a checkpoints dir, or a run dir."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"--checkpoint: {str(p)!r} does not exist")
    if (p / STATE).is_file():
        return p, validate(p)
    for root in (p, p / "checkpoints"):
        found = find_latest_valid(root, log) if root.is_dir() else None
        if found:
            return found
    raise CheckpointError(f"--checkpoint: no valid checkpoint found in {str(p)!r}")


def load_arrays(path: Path) -> tuple[dict, dict]:
    """(model parameter tree, optimizer state tree) of a validated checkpoint."""
    weights = mx.load(str(path / WEIGHTS))
    opt = mx.load(str(path / OPTIMIZER))
    return tree_unflatten(list(weights.items())), tree_unflatten(list(opt.items()))
