"""Every file dfnet4 writes goes through here: temp file + fsync + os.replace, never a half file.

- `atomic_path(path)`: a context manager that yields a temporary path beside `path` for writers that
  want a file name (mx.save_safetensors, soundfile, np.save); on success the file is fsynced and
  moved into place (or, with overwrite=False, linked into place only if `path` does not exist), on
  any failure the temp file is removed.
- `write_bytes_atomic` / `write_text_atomic` / `write_json_atomic`: the same for data in memory.
- A full disk, whatever layer notices it (ENOSPC/EDQUOT from the OS, MLX's "[write] Unable to
  write", NumPy's "N requested and M written"), becomes one `DiskFullError` that names the path and
  the bytes needed and available; `check_free_space` refuses a write that cannot fit before it starts.
- Temp names carry the writer's PID (`.NAME.tmp-PID...`), so `remove_stale_temps` can delete the
  leftovers of killed writers without touching those of a live one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

# What the layers below say when the disk is full but no errno reaches Python.
_DISK_FULL_TEXT = re.compile(r"No space left|Unable to write|requested and \d+ written|Disk quota", re.I)
# ".NAME.tmp-PID[.ext]" and the checkpoint writer's ".tmp-step-00000012-PID": the PID is the last number
_TEMP_PID = re.compile(r"\.tmp-(?:.*-)?(\d+)(?:\.[A-Za-z0-9]+)?$")


class DiskFullError(OSError):
    """A write that did not fit: `path`, `needed` and `available` bytes (needed may be None)."""

    def __init__(self, path: str | os.PathLike, needed: int | None, available: int | None, what: str = "writing"):
        self.path, self.needed, self.available = Path(path), needed, available
        need = f"needs {format_bytes(needed)}" if needed is not None else "needs more space"
        have = f", {format_bytes(available)} available" if available is not None else ""
        super().__init__(errno.ENOSPC, f"no space left on device {what} {self.path}: {need}{have}")

    def __str__(self) -> str:
        return self.strerror


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes available to this user on the file system holding `path` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def check_free_space(path: str | os.PathLike, needed: int, what: str = "writing") -> int | None:
    """Raise DiskFullError if `needed` bytes do not fit beside `path`; return the bytes available."""
    available = free_bytes(Path(path).parent)
    if available is not None and available < needed:
        raise DiskFullError(path, needed, available, what)
    return available


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, (OSError, RuntimeError)) and bool(_DISK_FULL_TEXT.search(str(exc)))


def temp_name(path: Path, suffix: str = "") -> Path:
    """The temp file beside `path`: hidden, named after it and this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a directory (so a rename inside it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def publish(tmp: Path, path: Path, overwrite: bool = True) -> None:
    """Move the finished `tmp` to `path`. overwrite=False never replaces an existing `path`: the file
    is hard-linked into place (which fails if the name exists) where the file system allows it."""
    if overwrite:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, f"{path} exists (appeared while writing); not replaced") from None
        except OSError:  # no hard links here (FAT, some network shares): check, then rename
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, f"{path} exists (appeared while writing); not replaced") from None
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    fsync_path(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None, suffix: str = "",
                overwrite: bool = True, what: str = "writing") -> Iterator[Path]:
    """Yield a temp path beside `path`; the caller writes it; it then replaces `path` atomically.

    `needed` (bytes, if known) is checked against the free space first. `suffix` keeps an extension
    some writers look at (np.save adds ".npy" otherwise). Any failure removes the temp file; a full
    disk is re-raised as DiskFullError naming `path`.
    """
    path = Path(path)
    tmp = temp_name(path, suffix)
    if needed is not None:
        check_free_space(path, needed, what)
    try:
        yield tmp
        fsync_path(tmp)
        publish(tmp, path, overwrite)
    except BaseException as exc:
        remove_quietly(tmp)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path, needed, free_bytes(path.parent), what) from exc
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    with atomic_path(path, needed=len(data), overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = 1) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=indent).encode())


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike, pattern: str = ".*tmp-*", log=None) -> list[Path]:
    """Delete temp files/dirs in `directory` matching `pattern` whose writer (the PID in the name) is
    no longer running on this machine; the live writers' and this process's own are kept."""
    root = Path(directory)
    removed = []
    if not root.is_dir():
        return removed
    for p in sorted(root.glob(pattern)):
        m = _TEMP_PID.search(p.name)
        if m is None or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        remove_quietly(p)
        removed.append(p)
        if log is not None:
            log(f"removed {p} (left by an interrupted run, process {m.group(1)})")
    return removed
