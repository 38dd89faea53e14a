"""Build a real-speech evaluation set offline: noisy/clean test pairs plus training speech and noise folders.

Speech: the recorded telephone-system prompts of Debian's `asterisk-core-sounds-{fr,es,it,ru}-g722`
(one professional speaker per language, CC-BY-SA-3.0; 16 kHz G.722, so band-limited to ~7 kHz),
decoded with the PyPI `G722` package (bit-exact ITU-T G.722). Prompts are concatenated (with short
pauses) into utterances of a few seconds. The prompts are split by file between the test pairs and
the training speech, so no test sentence is ever trained on.

Noise (48 kHz, full band): synthesised coloured noise (white to brown), mains hum with machine tones
(dfnet4.data.synth), a machine noise (rotating harmonics with slow amplitude modulation over
band-limited broadband), and babble of 4-6 prompts of the *other* languages' split (test babble
from test prompts, training babble from training prompts).

Never used (the project keeps them for an independent evaluation): the English asterisk sounds and
the other reserved sources; this script reads only the four languages above.

Install (Debian; the G722 decoder from PyPI):

    apt-get install asterisk-core-sounds-fr-g722 asterisk-core-sounds-es-g722 \\
        asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722
    pip install G722

Run:  python bench/build_eval_set.py --out ~/.cache/dfnet4/realspeech   (~1 min, ~200 MB)

Layout written (nothing is overwritten: an existing --out is refused unless --overwrite):

    OUT/test/noisy/*.wav, OUT/test/clean/*.wav   pairs by file name (dfnet4-eval --noisy/--clean);
    OUT/test/noisy/manifest.json                 per pair: group "snr X dB", noise kind, sources
    OUT/train/speech/*.wav, OUT/train/noise/*.wav   for dfnet4-prepare --speech/--noise
    OUT/manifest.json                            sources, licences, split sizes, seed
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from dfnet4.atomic_io import atomic_path, write_json_atomic
from dfnet4.data import synth
from dfnet4.data.audio import resample
from dfnet4.evaluate.pairs import mix_at_snr

SOUNDS = Path("/usr/share/asterisk/sounds")
LANGUAGES = ("fr", "es", "it", "ru")
SR = 48000
NOISE_KINDS = ("white", "pink", "brown", "hum", "machine", "babble")


def decode_g722(path: Path) -> np.ndarray:
    """G.722 file (64 kbit/s, 16 kHz) -> float32 at 16 kHz."""
    import G722

    pcm = np.asarray(G722.G722(16000, 64000).decode(path.read_bytes()), np.int16)
    return pcm.astype(np.float32) / 32768.0


def prompts(language: str) -> list[Path]:
    """The language's sentence prompts (top level; the digits/letters sub-folders hold single words)."""
    root = SOUNDS / language
    if not root.is_dir():
        raise SystemExit(f"build_eval_set: {root} is missing: apt-get install asterisk-core-sounds-{language}-g722")
    return sorted(p for p in root.glob("*.g722") if p.is_file())


def trim_silence(x: np.ndarray, sr: int = 16000, floor_db: float = -45.0) -> np.ndarray:
    """Drop leading/trailing frames more than |floor_db| below the clip's peak (prompts carry long pauses)."""
    frame = sr // 100
    n = x.size // frame
    if n == 0:
        return x
    level = 20 * np.log10(np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-9)
    active = np.nonzero(level > level.max() + floor_db)[0]
    return x[active[0] * frame : (active[-1] + 1) * frame] if active.size else x[:0]


def utterances(rng, clips: list[np.ndarray], count: int, seconds: tuple[float, float]) -> list[np.ndarray]:
    """`count` utterances at 16 kHz, each prompts joined with 0.1-0.3 s pauses up to a drawn length."""
    out = []
    order = list(rng.permutation(len(clips)))
    for _ in range(count):
        target = rng.uniform(*seconds) * 16000
        parts, total = [], 0
        while total < target:
            if not order:
                order = list(rng.permutation(len(clips)))
            c = clips[order.pop()]
            pause = np.zeros(int(rng.uniform(0.1, 0.3) * 16000), np.float32)
            parts += [c, pause]
            total += c.size + pause.size
        x = np.concatenate([np.zeros(1600, np.float32), *parts])  # 0.1 s lead-in
        out.append((x / np.abs(x).max() * 10 ** (rng.uniform(-12, -3) / 20)).astype(np.float32))
    return out


def machine(rng, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    rot = rng.uniform(15, 60)  # rotation rate: harmonics with slow beating, like a motor or fan
    x = sum(rng.uniform(0.2, 1.0) / np.sqrt(k) * np.sin(2 * np.pi * rot * k * t + rng.uniform(0, 6.3))
            for k in range(1, 40) if rot * k < 8000)
    am = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
    broad = synth.colored_noise(rng, n, alpha=rng.uniform(0.5, 1.5), sr=SR)
    x = am * (x / np.sqrt(np.mean(x**2)) + rng.uniform(0.3, 1.0) * broad)
    return x / np.sqrt(np.mean(x**2))


def noise(rng, kind: str, n: int, babble_pool: list[np.ndarray]) -> np.ndarray:
    if kind in ("white", "pink", "brown"):
        x = synth.colored_noise(rng, n, alpha={"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], sr=SR)
    elif kind == "hum":
        x = synth.hum(rng, n, sr=SR)
    elif kind == "machine":
        x = machine(rng, n)
    else:  # babble: 4-6 talkers of other languages, each a random stretch of a long utterance
        x = np.zeros(n)
        for _ in range(int(rng.integers(4, 7))):
            u = babble_pool[int(rng.integers(len(babble_pool)))]
            u = np.tile(u, int(np.ceil(n / u.size)) + 1)
            s = int(rng.integers(0, u.size - n + 1))
            x += u[s : s + n] / (np.sqrt(np.mean(u**2)) + 1e-12)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12) * 10 ** (-25 / 20)).astype(np.float32)


def write(path: Path, audio: np.ndarray, rate: int = SR, subtype: str = "FLOAT") -> None:
    """Test pairs as float (nothing lost before scoring); training material as 16-bit (a sixth of the size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".wav") as tmp:  # a killed build leaves no half file under a real name
        sf.write(str(tmp), audio, rate, subtype=subtype)


def build(out: Path, test_pairs: int, snrs: list[float], train_utterances: int, train_noises: int,
          test_fraction: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    split = {"test": {}, "train": {}}
    for lang in tqdm(LANGUAGES, desc="decode", unit="language"):
        files = prompts(lang)
        clips = [trim_silence(decode_g722(p)) for p in files]
        keep = [(p, c) for p, c in zip(files, clips) if c.size >= 8000]  # >= 0.5 s: sentences, not beeps
        idx = rng.permutation(len(keep))
        k = int(round(test_fraction * len(keep)))
        for name, part in (("test", idx[:k]), ("train", idx[k:])):
            split[name][lang] = [keep[i] for i in sorted(part)]
    manifest = {"seed": seed, "sample_rate": SR, "languages": list(LANGUAGES), "noise_kinds": list(NOISE_KINDS),
                "snr_db": snrs, "sources": {
                    "speech": "Debian asterisk-core-sounds-{fr,es,it,ru}-g722 (CC-BY-SA-3.0, one speaker per "
                              "language: see each package's copyright file), decoded with PyPI G722",
                    "noise": "synthesised (coloured, hum, machine) and babble of the split's other-language prompts"},
                "prompts": {n: {lang: [p.name for p, _ in v] for lang, v in s.items()} for n, s in split.items()}}

    # test pairs: utterances of each language in turn, SNR and noise kind cycling
    test_rows = []
    for i in tqdm(range(test_pairs), desc="test pairs", unit="pair"):
        lang = LANGUAGES[i % len(LANGUAGES)]
        (clean,) = utterances(rng, [c for _, c in split["test"][lang]], 1, (3.0, 6.0))
        clean = resample(clean, 16000, SR)
        others = [c for lg in LANGUAGES if lg != lang for _, c in split["test"][lg]]
        kind = NOISE_KINDS[(i // len(snrs)) % len(NOISE_KINDS)]
        snr = snrs[i % len(snrs)]
        pool = [resample(others[j], 16000, SR) for j in rng.choice(len(others), 8, replace=False)] if kind == "babble" else []
        v = noise(rng, kind, clean.size, pool)
        clean, noisy = mix_at_snr(clean, v, snr, rng)
        name = f"{i:03d}_{lang}_{kind}_snr{snr:g}"
        write(out / "test" / "clean" / f"{name}.wav", clean)
        write(out / "test" / "noisy" / f"{name}.wav", noisy)
        test_rows.append({"name": name, "group": f"snr {snr:g} dB", "language": lang, "noise": kind, "snr_db": snr,
                          "seconds": clean.size / SR})
    write_json_atomic(out / "test" / "noisy" / "manifest.json", {"pairs": test_rows})

    # training material: speech utterances and long noise clips (babble from training prompts only)
    train_clips = {lang: [c for _, c in v] for lang, v in split["train"].items()}
    for i in tqdm(range(train_utterances), desc="train speech", unit="file"):
        lang = LANGUAGES[i % len(LANGUAGES)]
        (u,) = utterances(rng, train_clips[lang], 1, (3.0, 8.0))
        write(out / "train" / "speech" / f"{lang}_{i:04d}.wav", u, 16000, "PCM_16")  # band-limited: 16 kHz suffices
    all_train = [c for v in train_clips.values() for c in v]
    for i in tqdm(range(train_noises), desc="train noise", unit="file"):
        kind = NOISE_KINDS[i % len(NOISE_KINDS)]
        pool = [resample(all_train[j], 16000, SR) for j in rng.choice(len(all_train), 8, replace=False)]
        write(out / "train" / "noise" / f"{kind}_{i:03d}.wav", noise(rng, kind, 10 * SR, pool), SR, "PCM_16")
    manifest["counts"] = {"test_pairs": test_pairs, "train_speech": train_utterances, "train_noise": train_noises,
                          "test_prompts": sum(len(v) for v in split["test"].values()),
                          "train_prompts": sum(len(v) for v in split["train"].values())}
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="build_eval_set.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to create (outside the repository)")
    p.add_argument("--test-pairs", type=int, default=40)
    p.add_argument("--snr", type=float, nargs="+", default=[-5.0, 0.0, 5.0, 10.0, 15.0])
    p.add_argument("--train-speech", type=int, default=400, help="training utterances (3-8 s each)")
    p.add_argument("--train-noise", type=int, default=48, help="training noise clips (10 s each)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of each language's prompts kept for test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    out = Path(args.out).expanduser()
    if not 0 < args.test_fraction < 1:
        p.error(f"--test-fraction: got {args.test_fraction}, need 0 < f < 1")
    if min(args.test_pairs, args.train_speech, args.train_noise) < 1:
        p.error("--test-pairs, --train-speech and --train-noise need >= 1")
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            p.error(f"--out: {str(out)!r} exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    try:
        import G722  # noqa: F401
    except ImportError:
        p.error("the G.722 decoder is missing: pip install G722")
    m = build(out, args.test_pairs, args.snr, args.train_speech, args.train_noise, args.test_fraction, args.seed)
    print(json.dumps(m["counts"]), file=sys.stderr)
    print(f"build_eval_set.py: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
