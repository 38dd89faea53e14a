"""One training process per run directory: an exclusive lock on `RUN/.lock`.

The lock is an flock(2) on the file, held for the whole run: the kernel releases it when the
process ends in any way (kill -9 included), so a lock can never outlive its owner, and of two
processes starting on the same --out exactly one gets it. The file also records the owner's PID
and host, for the second process's error message and for the message that a run which ended
without releasing it (a crash, a kill) left it behind; the file is emptied on a clean release.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class RunLocked(ValueError):
    """The run directory is in use by another dfnet4-train."""


class RunLock:
    def __init__(self, run_dir: str | os.PathLike, log=print):
        self.path = Path(run_dir) / LOCK_NAME
        self.log = log
        self.fd: int | None = None

    def _owner(self, fd: int) -> dict | None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 4096).decode()
            return json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self._owner(fd) or {}
            os.close(fd)
            raise RunLocked(
                f"--out: {str(self.path.parent)!r} is in use by another dfnet4-train (process {owner.get('pid', '?')} "
                f"on {owner.get('host', '?')}); wait for it to finish or choose another --out") from None
        stale = self._owner(fd)
        if stale is not None:
            self.log(f"dfnet4: taking over {self.path}: the run of process {stale.get('pid')} on "
                     f"{stale.get('host')} ended without releasing it (killed or crashed)")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # a clean end: the next run has nothing to report
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
