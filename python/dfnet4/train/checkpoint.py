"""Atomic, self-validating checkpoints.

A checkpoint is a directory `<run>/checkpoints/step-00000123/` holding
    weights.safetensors     the model parameters (mx.save_safetensors)
    optimizer.safetensors   the optimizer state, flattened
    state.json              step, epoch, data position, RNG state, model + run config, and the
                            SHA-256 and size of both .safetensors files
and `<run>/checkpoints/latest` names the newest one. Writing goes to a temp directory beside the
final one; every file is fsynced, the directory is renamed into place with os.replace, and only
then is `latest` (itself written atomically) updated. A checkpoint whose files fail the recorded
checksums (a truncated write, a damaged disk) is rejected on load and the previous one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

FORMAT = "dfnet4-checkpoint"
VERSION = 1
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
LATEST = "latest"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or damaged."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save(directory: str | os.PathLike, step: int, parameters: dict, optimizer_state: dict,
         state: dict[str, Any], keep: int = 3) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, keep the newest `keep`."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = dict(tree_flatten(parameters))
    opt = dict(tree_flatten(optimizer_state))
    mx.save_safetensors(str(tmp / WEIGHTS), weights)
    mx.save_safetensors(str(tmp / OPTIMIZER), opt)
    files = {}
    for name in (WEIGHTS, OPTIMIZER):
        _fsync_file(tmp / name)
        files[name] = {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
    full_state = {"format": FORMAT, "version": VERSION, "step": int(step), "files": files,
                  "saved_at": time.time(), **state}
    _write_text_atomic(tmp / STATE, json.dumps(full_state, indent=1))
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. a signal right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_text_atomic(root / LATEST, final.name + "\n")
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    ckpts = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in ckpts[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):  # leftovers of writers that were killed
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)


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
    return state


def candidates(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint directories, newest first; the one `latest` names goes first."""
    root = Path(directory)
    ckpts = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    latest = root / LATEST
    if latest.is_file():
        named = root / latest.read_text().strip()
        if named in ckpts:
            ckpts.remove(named)
            ckpts.insert(0, named)
    return ckpts


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
