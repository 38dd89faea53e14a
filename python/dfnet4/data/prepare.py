"""`dfnet4-prepare`: audio folders -> a sharded, indexed 48 kHz cache (resumable, never silent on bad files)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from dfnet4.atomic_io import atomic_path, remove_stale_temps, write_json_atomic
from dfnet4.data.audio import SAMPLE_RATE, list_audio_files, read_audio
from dfnet4.data.cache import FORMAT, KINDS, VERSION

DTYPES = {"float32": np.float32, "float16": np.float16}


def _shard_paths(out: Path, kind: str, shard: int) -> tuple[Path, Path]:
    stem = out / kind / f"shard-{shard:05d}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """np.save through a temp file (dfnet4.atomic_io): no half shard, a clear error on a full disk."""
    with atomic_path(path, needed=array.nbytes + 128, suffix=".npy", what="writing shard") as tmp:
        np.save(tmp, array)


def _load_manifest(manifest_path: Path, npy_path: Path, sources: list[str], dtype: str) -> dict | None:
    """The shard's manifest when the shard is complete and was built from exactly `sources`."""
    if not (manifest_path.is_file() and npy_path.is_file()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("sources") != sources or manifest.get("dtype") != dtype:
        return None
    if npy_path.stat().st_size != manifest.get("npy_bytes"):
        return None
    return manifest


def write_kind(
    out: Path,
    kind: str,
    items: list[tuple[str, Callable[[], np.ndarray]]],
    files_per_shard: int = 32,
    dtype: str = "float32",
    progress: bool = True,
    verb: str = "prepare",
) -> dict:
    """Write one kind's shards. `items` are (source name, loader) pairs; a loader that raises marks
    the source failed (recorded with its error). Complete shards from an earlier run are reused,
    the temp files of an interrupted one removed."""
    (out / kind).mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out / kind, log=lambda m: tqdm.write(f"dfnet4: {m}"))
    groups = [items[i : i + files_per_shard] for i in range(0, len(items), files_per_shard)]
    shards, clips, failed = [], [], []
    reused = 0
    bar = tqdm(total=len(items), desc=f"{verb} {kind}", unit="file", disable=not progress)
    for shard_id, group in enumerate(groups):
        npy_path, manifest_path = _shard_paths(out, kind, shard_id)
        sources = [name for name, _ in group]
        manifest = _load_manifest(manifest_path, npy_path, sources, dtype)
        if manifest is None:
            pieces, entries, bad = [], [], []
            offset = 0
            for name, load in group:
                try:
                    audio = np.asarray(load(), dtype=np.float32)
                    if audio.ndim != 1 or audio.size == 0:
                        raise ValueError(f"decoded to shape {audio.shape}, need a non-empty mono signal")
                except Exception as exc:  # any decoder error: report and skip this file
                    bad.append({"source": name, "error": f"{type(exc).__name__}: {exc}"})
                    tqdm.write(f"dfnet4-prepare: skipping unreadable {kind} file {name}: {exc}")
                else:
                    entries.append({"offset": offset, "length": int(audio.size), "source": name})
                    pieces.append(audio)
                    offset += audio.size
                bar.update(1)
            data = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
            save_npy_atomic(npy_path, data.astype(DTYPES[dtype]))
            manifest = {"sources": sources, "dtype": dtype, "clips": entries, "failed": bad,
                        "npy_bytes": npy_path.stat().st_size}
            write_json_atomic(manifest_path, manifest)  # written last: marks the shard complete
        else:
            reused += 1
            for f in manifest["failed"]:  # never silent, also when resuming
                tqdm.write(f"dfnet4-prepare: skipped unreadable {kind} file {f['source']}: {f['error']}")
            bar.update(len(group))
        shards.append({"file": f"{kind}/{npy_path.name}", "samples": sum(c["length"] for c in manifest["clips"]),
                       "bytes": manifest["npy_bytes"]})
        clips.extend({"shard": shard_id, **c} for c in manifest["clips"])
        failed.extend(manifest["failed"])
    bar.close()
    return {"shards": shards, "clips": clips, "failed": failed, "reused_shards": reused}


def write_index(out: Path, kinds: dict[str, dict], sources: dict[str, str], dtype: str, extra: dict | None = None) -> dict:
    index = {"format": FORMAT, "version": VERSION, "sample_rate": SAMPLE_RATE, "dtype": dtype,
             "sources": sources, "kinds": kinds, **(extra or {})}
    write_json_atomic(out / "index.json", index)
    return index


def prepare(
    out: str | os.PathLike,
    speech: str | os.PathLike,
    noise: str | os.PathLike,
    rir: str | os.PathLike | None = None,
    files_per_shard: int = 32,
    dtype: str = "float32",
    progress: bool = True,
) -> dict:
    """Build (or finish building) the cache at `out` from the audio below the given folders."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: got {dtype!r}, need one of {sorted(DTYPES)}")
    if files_per_shard < 1:
        raise ValueError(f"files_per_shard: got {files_per_shard}, need >= 1")
    out = Path(out)
    dirs = {"speech": speech, "noise": noise, "rir": rir}
    listed = {}
    for kind in KINDS:
        if dirs[kind] is None:
            continue
        files = list_audio_files(dirs[kind])
        if not files and kind != "rir":
            raise ValueError(f"--{kind}: no audio files found below {str(dirs[kind])!r}")
        listed[kind] = (Path(dirs[kind]), files)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, log=lambda m: tqdm.write(f"dfnet4: {m}"))
    kinds = {}
    for kind, (root, files) in listed.items():
        items = [(str(p.relative_to(root)), (lambda p=p: read_audio(p)[0])) for p in files]
        kinds[kind] = write_kind(out, kind, items, files_per_shard, dtype, progress)
    for kind in ("speech", "noise"):
        if not kinds[kind]["clips"]:
            raise ValueError(f"--{kind}: none of the {len(listed[kind][1])} files could be read")
    return write_index(out, kinds, {k: str(v[0].resolve()) for k, v in listed.items()}, dtype)


def summary(index: dict) -> Iterable[str]:
    for kind, info in index["kinds"].items():
        seconds = sum(c["length"] for c in info["clips"]) / index["sample_rate"]
        yield (f"{kind}: {len(info['clips'])} clips, {seconds / 60:.1f} min in {len(info['shards'])} shards"
               f" ({info.get('reused_shards', 0)} reused), {len(info['failed'])} unreadable files skipped")
        for f in info["failed"]:
            yield f"  skipped {f['source']}: {f['error']}"
