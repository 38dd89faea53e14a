"""Run dfnet4-train in this process and SIGKILL it at one phase of its work (the reliability tests).

    python _kill_child.py PHASE[:N] -- DFNET4-TRAIN-ARGS...

A SIGKILL runs no cleanup at all (no `finally`, no `except`), so the run directory is left exactly
as a `kill -9` or a power cut at that moment would leave it. The phases are reached by wrapping the
functions that do the work; N selects the checkpoint step or the train step where the kill happens.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import dfnet4  # noqa: F401  (before mlx.core: the BLAS shim)
import mlx.core as mx

from dfnet4 import atomic_io
from dfnet4.cli.train import main
from dfnet4.train import checkpoint as ckpt
from dfnet4.train import loop, metrics


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def first_validation(_n):
    loop.Trainer.validate = lambda self: die()


def mid_step(n):
    make = loop.Trainer._make_step

    def make_step(self):
        step = make(self)

        def killing(*args):
            if self.step + 1 == n:  # step n has its batch and is being computed
                die()
            return step(*args)
        return killing
    loop.Trainer._make_step = make_step


def torn_weights(n):
    """ckpt n's weights file written halfway (as a kill in the middle of the write leaves it)."""
    save = mx.save_safetensors

    def saving(path, arrays, *a, **k):
        save(path, arrays, *a, **k)
        if ckpt.checkpoint_name(n) in path and path.endswith(ckpt.WEIGHTS):
            os.truncate(path, os.path.getsize(path) // 2)
            die()
    mx.save_safetensors = saving


def _wrap_text_write(module, kill_when, write_first: bool):
    write = module.write_text_atomic

    def writing(path, text):
        if kill_when(Path(path), text):
            if write_first:
                write(path, text)
            else:  # the temp file half written, never renamed
                atomic_io.temp_name(Path(path)).write_text(text[: len(text) // 2])
            die()
        return write(path, text)
    module.write_text_atomic = writing


def state_written(n):
    """ckpt n complete in its temp directory, not renamed into place."""
    _wrap_text_write(ckpt, lambda p, _t: p.name == ckpt.STATE and ckpt.checkpoint_name(n) in str(p), True)


def before_latest(n):
    """ckpt n renamed into place, `latest` still naming the previous one."""
    _wrap_text_write(ckpt, lambda p, t: p.name == ckpt.LATEST and t.strip() == ckpt.checkpoint_name(n), False)


def in_prune(n):
    prune = ckpt._prune

    def pruning(root, keep):
        if (Path(root) / ckpt.LATEST).read_text().strip() == ckpt.checkpoint_name(n):
            die()
        prune(root, keep)
    ckpt._prune = pruning


def metrics_line(n):
    """Half of the train record of step n appended to metrics.jsonl."""
    write = metrics.MetricsLog.write

    def writing(self, **record):
        if record.get("kind") == "train" and record.get("step") == n:
            with open(self.path, "a") as f:
                line = json.dumps(record)
                f.write(line[: len(line) // 2])
            die()
        write(self, **record)
    metrics.MetricsLog.write = writing


def metrics_truncation(_n):
    """On resume, while metrics.jsonl is rolled back to the checkpoint's step."""
    _wrap_text_write(metrics, lambda p, _t: p.name == "metrics.jsonl", False)


def config_write(_n):
    _wrap_text_write(loop, lambda p, _t: p.name == "config.toml", False)


PHASES = {f.__name__.replace("_", "-"): f for f in (
    first_validation, mid_step, torn_weights, state_written, before_latest, in_prune, metrics_line,
    metrics_truncation, config_write)}

if __name__ == "__main__":
    phase, _, n = sys.argv[1].partition(":")
    PHASES[phase](int(n or 0))
    sys.exit(main(sys.argv[sys.argv.index("--") + 1:]))
