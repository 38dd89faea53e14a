"""The on-disk audio cache: per kind (speech / noise / rir) a few big .npy shards plus one JSON index.

Layout of a cache directory:

    index.json                 {"format": "dfnet4-cache", "version": 1, "sample_rate": 48000,
                                "kinds": {kind: {"shards": [...], "clips": [...], "failed": [...]}}}
    <kind>/shard-00000.npy     1-D float32/float16 array: the clips of this shard back to back
    <kind>/shard-00000.json    the shard's manifest (its clips and its failed inputs), written last

Every file is written to a temporary name in the same directory and moved into place with
os.replace (dfnet4.atomic_io), so an interrupted `prepare` never leaves a half-written shard that
looks complete; the temp files of a killed run are removed by the next one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

FORMAT = "dfnet4-cache"
VERSION = 1
KINDS = ("speech", "noise", "rir")


class CacheError(ValueError):
    """A cache directory that is missing, incomplete or not a dfnet4 cache."""


class AudioCache:
    """Read access to a prepared cache: `clip(kind, i)` returns the i-th clip as float32 (memory-mapped)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        index_path = self.directory / "index.json"
        if not self.directory.is_dir():
            raise CacheError(f"cache directory {str(self.directory)!r} does not exist; create it with dfnet4-prepare")
        if not index_path.is_file():
            raise CacheError(
                f"cache directory {str(self.directory)!r} has no index.json: it is not a finished dfnet4 cache "
                "(run dfnet4-prepare --out on it, or resume an interrupted prepare)"
            )
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as exc:
            raise CacheError(f"{index_path}: unreadable index ({exc})") from exc
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise CacheError(f"{index_path}: not a {FORMAT} v{VERSION} index")
        self.index = index
        self.sample_rate = int(index["sample_rate"])
        self._shards: dict[tuple[str, int], np.ndarray] = {}
        for kind, info in index["kinds"].items():  # a missing or cut shard fails here, not mid-training
            for shard in info["shards"]:
                path = self.directory / shard["file"]
                size = path.stat().st_size if path.is_file() else None
                if size is None or ("bytes" in shard and size != shard["bytes"]):
                    state = "is missing" if size is None else f"has {size} bytes, the index recorded {shard['bytes']}"
                    raise CacheError(f"cache shard {path} {state}; re-run dfnet4-prepare with the same "
                                     "arguments to rebuild it")

    def num_clips(self, kind: str) -> int:
        return len(self.index["kinds"].get(kind, {}).get("clips", []))

    def clip_info(self, kind: str, i: int) -> dict:
        return self.index["kinds"][kind]["clips"][i]

    def failed(self, kind: str) -> list[dict]:
        return self.index["kinds"].get(kind, {}).get("failed", [])

    def _shard(self, kind: str, shard: int) -> np.ndarray:
        key = (kind, shard)
        if key not in self._shards:
            path = self.directory / self.index["kinds"][kind]["shards"][shard]["file"]
            try:
                self._shards[key] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise CacheError(f"cache shard {path} is unreadable ({exc}); re-run dfnet4-prepare to rebuild it") from exc
        return self._shards[key]

    def clip(self, kind: str, i: int) -> np.ndarray:
        info = self.clip_info(kind, i)
        data = self._shard(kind, info["shard"])
        return np.asarray(data[info["offset"] : info["offset"] + info["length"]], dtype=np.float32)
