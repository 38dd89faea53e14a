"""Noisy/clean pairs for evaluation: matched by file name in two folders, or mixed from speech and noise.

Every signal is read as mono float32 at the models' rate (48 kHz; any rate and channel count in,
multi-channel files are averaged), only when the pair is scored, so a large set never sits in
memory. A pair that cannot be used (unreadable file, silent clean reference) raises PairError when
loaded, and the report lists it instead of dropping it silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import numpy as np

from dfnet4.data.audio import SAMPLE_RATE, list_audio_files, read_audio
from dfnet4.evaluate.align import Alignment, align
from dfnet4.train.metrics import silent


class PairError(ValueError):
    """A pair that cannot be scored (unreadable or silent file); the message says which and why."""


@dataclass
class Pair:
    name: str  # the file name relative to its folder, without extension
    load: Callable[[], tuple[np.ndarray, np.ndarray]]  # -> (noisy, clean), read only when scored
    group: str = ""  # e.g. "snr 5 dB": the report also averages per group
    sources: dict = field(default_factory=dict)  # where the signals came from

    def load_aligned(self, max_lag_seconds: float) -> tuple[Alignment, np.ndarray, np.ndarray]:
        """(alignment, noisy, clean): read, then the lag search within +-max_lag_seconds; PairError or
        AlignmentError when the pair cannot be scored."""
        noisy, clean = self.load()
        return align(noisy, clean, int(round(max_lag_seconds * SAMPLE_RATE))), noisy, clean


def _stem(path: Path, root: Path) -> str:
    return str(path.relative_to(root).with_suffix(""))


@lru_cache(maxsize=8)  # --mix reuses a few noise files many times
def _read_cached(path: Path) -> np.ndarray:
    return read_audio(path, SAMPLE_RATE, mono=True)[0]


def _read(path: Path, role: str = "", cached: bool = False) -> np.ndarray:
    try:
        audio = _read_cached(path) if cached else read_audio(path, SAMPLE_RATE, mono=True)[0]
    except Exception as exc:  # noqa: BLE001  (libsndfile raises several types; all are "unreadable")
        raise PairError(f"{role} file {str(path)!r} is unreadable: {exc}") from exc
    return audio


def _not_silent(audio: np.ndarray, role: str, path: Path) -> np.ndarray:
    if silent(audio):
        raise PairError(f"{role} file {str(path)!r} is silent (peak below -80 dBFS): nothing to score against")
    return audio


def _load_files(noisy_path: Path, clean_path: Path) -> tuple[np.ndarray, np.ndarray]:
    noisy = _read(noisy_path, "noisy")
    return noisy, _not_silent(_read(clean_path, "clean"), "clean", clean_path)


def _manifest_groups(noisy_dir: Path) -> dict[str, str]:
    """Groups from a `manifest.json` beside the noisy files ({"pairs": [{"name", "group"}...]}), if any."""
    path = noisy_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text()).get("pairs", [])
        return {r["name"]: str(r.get("group", "")) for r in rows}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a manifest this tool reads ({exc})") from exc


def pairs_from_dirs(noisy_dir: str | os.PathLike, clean_dir: str | os.PathLike,
                    flags: tuple[str, str] = ("--noisy", "--clean")) -> list[Pair]:
    """Pairs matched by relative path without extension; any file without its partner is an error
    (ValueError naming `flags`, the options that gave the two folders)."""
    noisy_root, clean_root = Path(noisy_dir), Path(clean_dir)
    for flag, root in zip(flags, (noisy_root, clean_root)):
        if not root.is_dir():
            raise ValueError(f"{flag}: {str(root)!r} is not a folder")
    noisy = {_stem(p, noisy_root): p for p in list_audio_files(noisy_root)}
    clean = {_stem(p, clean_root): p for p in list_audio_files(clean_root)}
    if not noisy:
        raise ValueError(f"{flags[0]}: folder {str(noisy_root)!r} holds no audio files")
    only_noisy, only_clean = sorted(set(noisy) - set(clean)), sorted(set(clean) - set(noisy))
    if only_noisy or only_clean:
        def few(names):
            return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")

        parts = [f"{len(only_noisy)} noisy file(s) without a clean partner ({few(only_noisy)})" if only_noisy else "",
                 f"{len(only_clean)} clean file(s) without a noisy partner ({few(only_clean)})" if only_clean else ""]
        raise ValueError(f"{flags[0]}/{flags[1]}: the folders do not pair up by file name: "
                         + "; ".join(p for p in parts if p))
    groups = _manifest_groups(noisy_root)
    return [Pair(name, partial(_load_files, noisy[name], clean[name]), groups.get(name, ""),
                 {"noisy": str(noisy[name]), "clean": str(clean[name])}) for name in sorted(noisy)]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy): speech plus a random crop of `noise` (tiled if short) at `snr_db` (power over the
    whole clip); both scaled down together when the mixture would clip."""
    n = speech.size
    if noise.size < n:
        noise = np.tile(noise, int(np.ceil(n / noise.size)) + 1)
    start = int(rng.integers(0, noise.size - n + 1))
    v = noise[start : start + n].astype(np.float64)
    p_speech = float(np.mean(np.square(speech, dtype=np.float64)))
    p_noise = max(float(np.mean(np.square(v))), 1e-20)
    clean = speech.astype(np.float64)
    noisy = clean + v * np.sqrt(p_speech / p_noise / 10 ** (snr_db / 10))
    peak = float(np.max(np.abs(noisy)))
    gain = 0.99 / peak if peak > 0.99 else 1.0
    return (clean * gain).astype(np.float32), (noisy * gain).astype(np.float32)


def pairs_from_mix(speech_dir: str | os.PathLike, noise_dir: str | os.PathLike, snrs: list[float],
                   seed: int) -> list[Pair]:
    """Every speech file at every SNR, each with a noise file and crop drawn from (seed, file, snr)."""
    speech_root, noise_root = Path(speech_dir), Path(noise_dir)
    for flag, root in (("--mix SPEECH_DIR", speech_root), ("--mix NOISE_DIR", noise_root)):
        if not root.is_dir():
            raise ValueError(f"{flag}: {str(root)!r} is not a folder")
    speech_files, noise_files = list_audio_files(speech_root), list_audio_files(noise_root)
    if not speech_files or not noise_files:
        raise ValueError(f"--mix: needs audio files in both folders, found {len(speech_files)} speech "
                         f"and {len(noise_files)} noise files")
    if not snrs:
        raise ValueError("--snr: give at least one SNR in dB")
    out = []
    for i, sp in enumerate(speech_files):
        for j, snr in enumerate(snrs):
            # one stream picks the noise file, another its crop: both functions of (seed, file, SNR) only
            npath = noise_files[int(np.random.default_rng([int(seed), i, j, 0]).integers(len(noise_files)))]
            out.append(Pair(f"{_stem(sp, speech_root)}_snr{snr:g}", partial(_mix_files, sp, npath, snr, [int(seed), i, j, 1]),
                            f"snr {snr:g} dB", {"speech": str(sp), "noise": str(npath), "snr_db": float(snr)}))
    return out


def _mix_files(speech_path: Path, noise_path: Path, snr: float, seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    speech = _not_silent(_read(speech_path, "speech"), "speech", speech_path)
    clean, noisy = mix_at_snr(speech, _read(noise_path, "noise", cached=True), snr, rng)
    return noisy, clean
