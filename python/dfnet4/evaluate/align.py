"""Time alignment of a noisy/clean pair by cross-correlation, so that nothing is scored misaligned.

The lag is searched between the noisy input and the clean reference (the enhancers keep the noisy
input's time base, so the same lag applies to their outputs). Equal lengths and no clear lag: the
pair is taken as it is. Different lengths: the lag must be found with a clear correlation peak,
otherwise the pair is reported as unalignable instead of being scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

MIN_CORRELATION = 0.2  # normalised peak below this: no trustworthy lag (pure noise vs speech ~ 0.01)


class AlignmentError(ValueError):
    """The pair has different lengths and no lag with a clear cross-correlation peak."""


# dfnet4-eval's --max-lag default and the validation pass's: the largest noisy/clean offset searched
DEFAULT_MAX_LAG_SECONDS = 0.5


@dataclass
class Alignment:
    lag: int  # noisy[n + lag] lines up with clean[n]
    correlation: float  # normalised cross-correlation at `lag`
    length: int  # samples scored after trimming both to their overlap

    def apply(self, signal: np.ndarray, role: str) -> np.ndarray:
        """Trim `signal` (role "clean", or "noisy" for the noisy input and every output made from it)."""
        start = max(self.lag, 0) if role == "noisy" else max(-self.lag, 0)
        return signal[start : start + self.length]


def find_lag(noisy: np.ndarray, clean: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag in [-max_lag, max_lag] with the largest normalised |cross-correlation|, its value)."""
    x = np.asarray(noisy, np.float64)
    y = np.asarray(clean, np.float64)
    norm = np.sqrt(np.sum(x * x) * np.sum(y * y))
    if norm == 0:
        return 0, 0.0
    corr = scipy.signal.correlate(x, y, mode="full", method="fft") / norm
    lags = scipy.signal.correlation_lags(x.size, y.size, mode="full")
    window = np.abs(lags) <= max_lag
    k = int(np.argmax(np.abs(corr[window])))
    return int(lags[window][k]), float(corr[window][k])


def align(noisy: np.ndarray, clean: np.ndarray, max_lag: int) -> Alignment:
    lag, corr = find_lag(noisy, clean, max_lag)
    if abs(corr) < MIN_CORRELATION:
        if noisy.size != clean.size:
            raise AlignmentError(
                f"noisy and clean differ in length ({noisy.size} vs {clean.size} samples at 48 kHz) and no lag "
                f"within +-{max_lag} samples correlates (best normalised cross-correlation {corr:.3f} < "
                f"{MIN_CORRELATION}); not scored"
            )
        lag = 0  # same length, no clear peak (e.g. speech buried in noise): score as given
        corr = find_lag(noisy, clean, 0)[1]
    start_noisy, start_clean = max(lag, 0), max(-lag, 0)
    length = min(noisy.size - start_noisy, clean.size - start_clean)
    if length < 4800:  # 0.1 s: PESQ and STOI need far more; SI-SDR of a sliver means nothing
        raise AlignmentError(f"after aligning (lag {lag} samples) only {max(length, 0)} samples overlap; not scored")
    return Alignment(lag, corr, length)
