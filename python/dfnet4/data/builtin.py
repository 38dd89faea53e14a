"""The built-in default data set: synthetic speech and noise written as a normal cache on first use."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfnet4.atomic_io import remove_quietly, remove_stale_temps
from dfnet4.data import synth
from dfnet4.data.cache import AudioCache, CacheError
from dfnet4.data.prepare import write_index, write_kind

BUILTIN_VERSION = 1


def default_root() -> Path:
    """$DFNET4_CACHE_DIR, else $XDG_CACHE_HOME/dfnet4, else ~/.cache/dfnet4."""
    if os.environ.get("DFNET4_CACHE_DIR"):
        return Path(os.environ["DFNET4_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dfnet4"


def ensure_builtin(root: str | os.PathLike | None = None, num_speech: int = 48, num_noise: int = 24,
                   speech_seconds: float = 4.0, noise_seconds: float = 6.0, seed: int = 20240601,
                   progress: bool = True) -> Path:
    """Return the built-in cache's directory, generating it first if needed.

    Its name encodes every generation parameter, so a different size never reuses a stale set.
    Generation happens in a private temp directory that is renamed into place, so concurrent
    processes (the ranks of a distributed run) never see a half-written set; a failed generation
    removes it, and the temp directories of killed generations are removed by the next one.
    """
    root = Path(root) if root is not None else default_root()
    name = f"builtin-v{BUILTIN_VERSION}-s{num_speech}x{speech_seconds:g}-n{num_noise}x{noise_seconds:g}-seed{seed}"
    target = root / name
    remove_stale_temps(root, ".builtin-*.tmp-*", log=(lambda m: print(f"dfnet4: {m}")) if progress else None)
    if (target / "index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp-{os.getpid()}"
    remove_quietly(tmp)
    try:
        _generate(tmp, num_speech, num_noise, speech_seconds, noise_seconds, seed, progress, target)
    except BaseException:
        remove_quietly(tmp)
        raise
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first: its set is identical
        remove_quietly(tmp)
    if not (target / "index.json").is_file():
        raise CacheError(f"could not create the built-in data set in {target}")
    AudioCache(target)  # validates
    return target


def _generate(tmp: Path, num_speech: int, num_noise: int, speech_seconds: float, noise_seconds: float,
              seed: int, progress: bool, target: Path) -> None:
    tmp.mkdir()
    if progress:
        print(f"dfnet4: generating the built-in synthetic data set in {target} (once)", flush=True)
    # Several talkers: each clip has its own f0 range; clips are generated lazily by write_kind.
    speech_items = [(f"synth-speech-{i:04d}", (lambda i=i: synth.speech(np.random.default_rng([seed, 1, i]),
                                                                      speech_seconds)))
                    for i in range(num_speech)]
    noise_items = [(f"synth-noise-{i:04d}-{synth.NOISE_KINDS[i % 3]}",
                    (lambda i=i: synth.noise(np.random.default_rng([seed, 2, i]), noise_seconds,
                                             synth.NOISE_KINDS[i % 3])))
                   for i in range(num_noise)]
    kinds = {"speech": write_kind(tmp, "speech", speech_items, progress=progress, verb="synthesise"),
             "noise": write_kind(tmp, "noise", noise_items, progress=progress, verb="synthesise")}
    write_index(tmp, kinds, {"speech": "builtin-synthetic", "noise": "builtin-synthetic"}, "float32",
                extra={"builtin": {"version": BUILTIN_VERSION, "seed": seed}})
