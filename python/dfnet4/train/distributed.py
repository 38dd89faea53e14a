"""Data parallelism over mx.distributed (the group mlx.launch sets up: ring over TCP, MPI, ...).

Failure reporting, which MLX leaves to the caller:
- start-up: `mx.distributed.init()` waits forever for a rank that never starts, silently, and
  holds the GIL while it waits (no Python thread or signal handler runs); `init` here gives up
  after `timeout` seconds: a small helper process prints the message and faulthandler's
  watchdog (a C thread that needs no GIL) ends the process with status 1;
- a rank that stops mid-run makes the others' next collective fail with MLX's "[ring] connection
  to a peer was lost"; `Dist` turns that into DistributedError naming this rank;
- mlx.launch's own exit status does not say whether the ranks succeeded, so the run ends with one
  collective (`finished`) after which rank 0 can say that every rank got to the end.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import subprocess
import sys
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

# what the launchers of MLX's backends put in the environment of every rank
LAUNCH_ENV = ("MLX_RANK", "MLX_HOSTFILE", "MLX_JACCL_DEVICES", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
STARTUP_FAILED = 1  # exit status of a rank whose group never formed (faulthandler's)


class DistributedError(RuntimeError):
    """Communication between the ranks failed (another rank stopped, crashed or never started)."""


def _looks_like_communication(exc: BaseException) -> bool:
    text = str(exc)
    return any(tag in text for tag in ("[ring]", "[mpi]", "[jaccl]", "[nccl]", "peer", "connection"))


@dataclass
class Dist:
    group: object | None
    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @contextlib.contextmanager
    def communication(self, what: str):
        """Turn MLX's communication errors (raised when the lazily built collectives run) into a
        DistributedError that says which rank saw what."""
        try:
            yield
        except RuntimeError as exc:
            if self.size > 1 and _looks_like_communication(exc):
                raise DistributedError(f"rank {self.rank} of {self.size}: {what} failed ({exc}): another rank "
                                       "stopped or crashed; see its output") from exc
            raise

    def average_gradients(self, grads):
        return grads if self.size == 1 else nn.average_gradients(grads, group=self.group)

    def mean_scalar(self, x: float) -> float:
        """Mean of a Python float over ranks (e.g. the logged loss)."""
        if self.size == 1:
            return x
        with self.communication("averaging a value over the ranks"):
            return float(mx.distributed.all_sum(mx.array(x, mx.float32), group=self.group).item()) / self.size

    def mean_and_any(self, x: float, flag: bool) -> tuple[float, bool]:
        """(mean of x over ranks, whether flag is set on any rank) in one all_sum."""
        if self.size == 1:
            return x, flag
        with self.communication("the per-step exchange of loss and stop flag"):
            s = mx.distributed.all_sum(mx.array([x, float(flag)], mx.float32), group=self.group)
            return float(s[0].item()) / self.size, bool(s[1].item() > 0)

    def barrier(self) -> None:
        if self.size > 1:
            with self.communication("waiting for the other ranks"):
                mx.eval(mx.distributed.all_sum(mx.array(1.0), group=self.group))

    def broadcast_int(self, value: int) -> int:
        """Rank 0's value on every rank (all ranks agree on e.g. the resume step)."""
        if self.size == 1:
            return value
        with self.communication("agreeing on the start step"):
            x = mx.array(value if self.rank == 0 else 0, mx.int32)
            return int(mx.distributed.all_sum(x, group=self.group).item())

    def finished(self) -> int:
        """Called by every rank at its end: the number of ranks that got there (all of them, or a
        DistributedError if one stopped early)."""
        if self.size == 1:
            return 1
        with self.communication("confirming that every rank finished"):
            return int(mx.distributed.all_sum(mx.array(1, mx.int32), group=self.group).item())


# The helper: prints the message unless its stdin closes (the parent got through, or died) in time.
_WATCHDOG = """
import select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
if not select.select([sys.stdin], [], [], float(sys.argv[1]))[0]:
    sys.stderr.write(sys.argv[2] + "\\n")
"""


@contextlib.contextmanager
def startup_watchdog(timeout: float | None, what: str):
    """End the process (status STARTUP_FAILED) with a message if the body, a blocking MLX call that
    holds the GIL, takes longer than `timeout` seconds."""
    if not timeout:
        yield
        return
    message = (f"dfnet4-train: error: {what} did not complete within {timeout:g} s; a rank that never started "
               "or failed at start-up (see its output), a host that cannot be reached, or a wrong host file "
               "(MLX_HOSTFILE)? Raise the limit with --dist-timeout if starting takes longer.")
    helper = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(timeout), message], stdin=subprocess.PIPE)
    with open(os.devnull, "w") as devnull:  # the message is the helper's; the traceback dump is not wanted
        faulthandler.dump_traceback_later(timeout + 1.0, exit=True, file=devnull)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
            helper.stdin.close()
            helper.wait()


def launched() -> bool:
    """Whether this process was started by a distributed launcher."""
    return any(k in os.environ for k in LAUNCH_ENV)


def launched_rank() -> int | None:
    """This process's rank as its launcher set it in the environment (None when not known)."""
    rank = os.environ.get("MLX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK")))
    return int(rank) if rank is not None and rank.isdigit() else None


def init(timeout: float | None = None) -> Dist:
    """The distributed group when launched by mlx.launch (or with MLX_RANK/MLX_HOSTFILE set), else a
    single-process stand-in. Under a launcher, every rank must have connected within `timeout` s."""
    if not mx.distributed.is_available():
        return Dist(None, 0, 1)
    rank = launched_rank()
    with startup_watchdog(timeout if launched() else None,
                          f"rank {'?' if rank is None else rank}: connecting to the other ranks"):
        group = mx.distributed.init()
        dist = Dist(group, group.rank(), group.size())
        dist.barrier()  # every rank is up and reachable
    return dist
