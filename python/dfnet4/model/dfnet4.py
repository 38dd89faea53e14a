"""DfNet4: DeepFilterNet3's architecture with a selectable temporal backbone.

Offline: `enh_spec, aux = model(spec)` computes the features from the spectrum, runs the encoder
on features shifted `conv_lookahead` frames ahead (DFN3's pad_feat), the ERB-mask decoder and
the deep-filter decoder, then masks the spectrum (all bins) and deep-filters the noisy spectrum's
lowest `nb_df` bins, which replace the masked ones.

Streaming: `state = model.init_state(batch)`, then `enh, state = model.step(spec_chunk, state)`
for chunks of any length and `enh, state = model.flush(state)` at the end. The outputs lag the
inputs by `conv_lookahead` frames; concatenated, they equal the offline output (in eval mode, where
BatchNorm uses its running statistics).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from dfnet4 import cpu_streams, dsp
from dfnet4.model.config import DfNet4Config
from dfnet4.model.decoders import DfDecoder, ErbDecoder
from dfnet4.model.encoder import Encoder


class DfNet4(nn.Module):
    def __init__(self, config: DfNet4Config | None = None, **overrides):
        super().__init__()
        if config is None:
            config = DfNet4Config.from_dict(overrides)
        elif overrides:
            config = DfNet4Config.from_tables(config.to_dict(), overrides)
        cfg = config
        # plain attributes (not parameters): the config and the fixed ERB layout
        object.__setattr__(self, "config", cfg)
        object.__setattr__(self, "erb_widths", dsp.erb_widths(cfg.sr, cfg.fft_size, cfg.nb_erb, cfg.min_nb_erb_freqs))
        object.__setattr__(self, "alpha", dsp.norm_alpha(cfg.sr, cfg.hop_size, cfg.norm_tau))
        self.enc = Encoder(cfg)
        self.erb_dec = ErbDecoder(cfg)
        self.df_dec = DfDecoder(cfg)

    # ------------------------------------------------------------------ checks and features
    def _check_spec(self, spec: mx.array, name: str = "spec") -> None:
        f = self.config.freq_bins
        if spec.ndim != 4 or spec.shape[2] != f or spec.shape[3] != 2:
            raise ValueError(f"DfNet4: {name} must have shape (batch, frames, {f}, 2), got {tuple(spec.shape)}")
        if not mx.issubdtype(spec.dtype, mx.floating):
            raise ValueError(f"DfNet4: {name} must be a float array, got dtype {spec.dtype}")

    def features(self, spec: mx.array, erb_state=None, unit_state=None):
        """spec (B, T, F, 2) -> feat_erb (B, T, nb_erb), feat_spec (B, T, nb_df, 2), (erb_state, unit_state).

        The same function serves training, offline and streaming inference.
        """
        spec = spec.astype(mx.float32)
        erb_db = dsp.erb_energy_db(spec, self.erb_widths)
        feat_erb, erb_state = dsp.erb_norm(erb_db, self.alpha, erb_state)
        feat_spec, unit_state = dsp.unit_norm(spec[:, :, : self.config.nb_df], self.alpha, unit_state)
        # features are inputs: no gradient flows into the spectrum through them (as in DFN3)
        return mx.stop_gradient(feat_erb), mx.stop_gradient(feat_spec), (erb_state, unit_state)

    def _combine(self, spec_df: mx.array, target: mx.array, mask: mx.array, coefs: mx.array, history=None):
        nb_df = self.config.nb_df
        low = dsp.deep_filter(spec_df[:, :, :nb_df], coefs, self.config.df_lookahead, history)
        masked = dsp.apply_erb_mask(target, mask, self.erb_widths)
        return mx.concatenate([low, masked[:, :, nb_df:]], axis=2)

    # ------------------------------------------------------------------ offline
    def __call__(self, spec: mx.array) -> tuple[mx.array, dict]:
        self._check_spec(spec)
        spec = spec.astype(mx.float32)
        feat_erb, feat_spec, _ = self.features(spec)
        la, t = self.config.conv_lookahead, spec.shape[1]
        if self.config.warmup_lookahead:
            # the encoder runs over every feature frame plus la zero frames; step k gives frame k - la
            feat_erb = mx.pad(feat_erb, [(0, 0), (0, la), (0, 0)])
            feat_spec = mx.pad(feat_spec, [(0, 0), (0, la), (0, 0), (0, 0)])
        elif la:  # DFN3's pad_feat: frame t sees the features of frame t + la, zeros past the end
            feat_erb = mx.pad(feat_erb[:, la:], [(0, 0), (0, min(la, t)), (0, 0)])
            feat_spec = mx.pad(feat_spec[:, la:], [(0, 0), (0, min(la, t)), (0, 0), (0, 0)])
        (e0, e1, e2, e3, emb, c0, lsnr), _ = self.enc(feat_erb, feat_spec)
        mask, _ = self.erb_dec(emb, e3, e2, e1, e0)
        coefs, _ = self.df_dec(emb, c0)
        if self.config.warmup_lookahead:
            lsnr, mask, coefs = lsnr[:, la:], mask[:, la:], coefs[:, la:]
        # the deep filter and the ERB mask are MLX ops on one thread per stream: batch pieces run
        # side by side on the CPU (dfnet4.cpu_streams; one piece on the GPU)
        parts = cpu_streams.map_pieces(lambda s, m, c: self._combine(s, s, m, c), spec, mask, coefs)
        enh = parts[0][1] if len(parts) == 1 else mx.concatenate([part for _, part in parts], axis=0)
        return enh, {"lsnr": lsnr, "erb_mask": mask, "df_coefs": coefs}

    def enhance(self, audio: mx.array, sample_rate: int | None = None) -> mx.array:
        """audio (B, N) at config.sr -> enhanced audio (B, N)."""
        if sample_rate is not None and sample_rate != self.config.sr:
            raise ValueError(f"DfNet4.enhance: sample_rate={sample_rate}, the model needs {self.config.sr} Hz audio")
        if audio.ndim != 2 or audio.shape[1] < 1:
            raise ValueError(f"DfNet4.enhance: audio must have shape (batch, samples), got {tuple(audio.shape)}")
        n = audio.shape[1]
        # give the last frames their lookahead (DFN3's enhance pads the signal the same way)
        pad = self.config.conv_lookahead * self.config.hop_size
        x = mx.pad(audio.astype(mx.float32), [(0, 0), (0, pad)])
        spec = dsp.stft(x, self.config.fft_size, self.config.hop_size)
        enh, _ = self(spec)
        return dsp.istft(enh, n + pad, self.config.fft_size, self.config.hop_size)[:, :n]

    # ------------------------------------------------------------------ streaming
    @property
    def _df_past(self) -> int:
        return self.config.df_order - 1 - self.config.df_lookahead

    def init_state(self, batch: int, startup_frames: bool = False) -> dict:
        """Everything a stream carries: norm states, conv histories, backbone states, spectrum history.

        `skip` counts the first output frames that are not emitted (frames before 0, whose
        features only serve as lookahead). `startup_frames=True` starts the stream as libDF's
        realtime runtime (DfTract) does: the encoder runs from the first frame (as with
        `warmup_lookahead`) and the `conv_lookahead` frames before 0 are emitted too (a zero
        spectrum, masked, plus the deep filter's reach into frames 0, 1, ...), so every input
        frame gives one output frame from the start.
        """
        cfg = self.config
        kt_inp = cfg.conv_kernel_inp[0] - 1
        kt_p = cfg.df_pathway_kernel_size_t - 1
        return {
            "erb_norm": mx.broadcast_to(dsp.erb_norm_init(cfg.nb_erb), (batch, cfg.nb_erb)),
            "unit_norm": mx.broadcast_to(dsp.unit_norm_init(cfg.nb_df), (batch, cfg.nb_df)),
            "enc": {
                "erb_conv0": mx.zeros((batch, kt_inp, cfg.nb_erb, 1)) if kt_inp else None,
                "df_conv0": mx.zeros((batch, kt_inp, cfg.nb_df, 2)) if kt_inp else None,
                "emb_gru": None,
            },
            "erb_dec": None,
            "df_dec": {"df_gru": None, "df_convp": mx.zeros((batch, kt_p, cfg.nb_df, cfg.conv_ch)) if kt_p else None},
            "spec": mx.zeros((batch, self._df_past + cfg.conv_lookahead, cfg.freq_bins, 2)),
            "skip": 0 if startup_frames else cfg.conv_lookahead,
        }

    def step(self, spec: mx.array, state: dict) -> tuple[mx.array, dict]:
        """Process the next frames (B, n, F, 2); returns the enhanced frames that are complete now."""
        self._check_spec(spec)
        if spec.shape[0] != state["spec"].shape[0]:
            raise ValueError(f"DfNet4.step: spec has batch {spec.shape[0]}, state {state['spec'].shape[0]}")
        if spec.shape[1] == 0:
            return mx.zeros((spec.shape[0], 0, self.config.freq_bins, 2)), state
        spec = spec.astype(mx.float32)
        feat_erb, feat_spec, (es, us) = self.features(spec, state["erb_norm"], state["unit_norm"])
        return self._advance(spec, feat_erb, feat_spec, {**state, "erb_norm": es, "unit_norm": us})

    def flush(self, state: dict) -> tuple[mx.array, dict]:
        """Emit the last `conv_lookahead` frames (their lookahead lies past the end: zero features)."""
        cfg = self.config
        b, la = state["spec"].shape[0], cfg.conv_lookahead
        return self._advance(
            mx.zeros((b, la, cfg.freq_bins, 2)), mx.zeros((b, la, cfg.nb_erb)), mx.zeros((b, la, cfg.nb_df, 2)), state
        )

    def _advance(self, spec, feat_erb, feat_spec, state):
        cfg = self.config
        n, past, la = spec.shape[1], self._df_past, cfg.conv_lookahead
        if n == 0:
            return mx.zeros((spec.shape[0], 0, cfg.freq_bins, 2)), state
        buf = mx.concatenate([state["spec"], spec], axis=1)  # frames t0 - past - la ... t0 + n - 1
        drop = min(state["skip"], n)
        new = {**state, "spec": buf[:, buf.shape[1] - (past + la) :], "skip": state["skip"] - drop}
        m = n - drop
        warm = cfg.warmup_lookahead  # the encoder sees the dropped frames too; their outputs are dropped
        if m == 0 and not warm:
            return mx.zeros((spec.shape[0], 0, cfg.freq_bins, 2)), new
        enc_from = 0 if warm else drop
        (e0, e1, e2, e3, emb, c0, lsnr), new["enc"] = self.enc(
            feat_erb[:, enc_from:], feat_spec[:, enc_from:], state["enc"]
        )
        mask, new["erb_dec"] = self.erb_dec(emb, e3, e2, e1, e0, state["erb_dec"])
        coefs, new["df_dec"] = self.df_dec(emb, c0, state["df_dec"])
        if warm:
            mask, coefs = mask[:, drop:], coefs[:, drop:]
        if m == 0:
            return mx.zeros((spec.shape[0], 0, cfg.freq_bins, 2)), new
        # feature frame t0 + drop + k gives output frame t0 + drop + k - la, at buffer index past + drop + k
        i0 = past + drop
        enh = self._combine(
            buf[:, i0 : i0 + m + cfg.df_lookahead], buf[:, i0 : i0 + m], mask, coefs,
            history=buf[:, i0 - past : i0, : cfg.nb_df],
        )
        return enh, new
