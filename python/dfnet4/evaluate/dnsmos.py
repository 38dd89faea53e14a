"""DNSMOS (non-intrusive MOS: signal, background, overall) through the `speechmos` package, when it imports.

speechmos ships Microsoft's DNSMOS ONNX models in its wheel and runs at 16 kHz; it needs librosa
(not declared by its wheel). It is slow (seconds per clip on a CPU), so it is optional.
"""

from __future__ import annotations

import numpy as np

from dfnet4.data.audio import resample

KEYS = {"ovrl_mos": "dnsmos_ovrl", "sig_mos": "dnsmos_sig", "bak_mos": "dnsmos_bak"}


def unavailable_reason() -> str | None:
    """None when DNSMOS can run, else why not (with the install command)."""
    try:
        import speechmos.dnsmos  # noqa: F401
    except Exception as exc:  # noqa: BLE001  (its import pulls librosa, requests, onnxruntime)
        return f"speechmos is not usable ({type(exc).__name__}: {exc}); pip install speechmos librosa"
    return None


def score(audio: np.ndarray, sample_rate: int) -> dict:
    """{dnsmos_ovrl, dnsmos_sig, dnsmos_bak} of one clip (any rate; resampled to 16 kHz)."""
    from speechmos import dnsmos

    x = np.clip(resample(audio, sample_rate, 16000), -1.0, 1.0)
    result = dnsmos.run(x, 16000)
    return {ours: float(result[theirs]) for theirs, ours in KEYS.items()}
