"""The attention backbone: pre-norm causal transformer layers inside DeepFilterNet's squeezed shape.

Positions enter through rotary embeddings (RoPE) on queries and keys. RoPE makes a score depend
only on the distance between query and key, so the cache can hold already-rotated keys and a
windowed stream behaves identically however far into the signal it is.

State (per layer): the cached keys and values, (batch, heads, L, head_dim), with L <= window when
the window is bounded; plus one shared position `offset` (an int32 scalar array): the number of
frames seen so far, i.e. the absolute position of the next frame.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from dataclasses import dataclass

from dfnet4.backbones.base import Squeezed, State
from dfnet4.backbones.registry import BackboneOptions, register
from dfnet4.schema import param, require


@dataclass
class AttentionOptions(BackboneOptions):
    """The attention backbone's `[model.attention]` table."""

    heads: int = param(4, ge=1)
    window: int | None = param(None, ge=1)  # None: every earlier frame; W: the last W frames
    ffn_expand: int = param(2, ge=1)

    def kwargs(self) -> dict:
        return {"num_heads": self.heads, "window": self.window, "ffn_expand": self.ffn_expand}

    def check(self, model, key: str) -> None:
        for hidden in ("emb_hidden_dim", "df_hidden_dim"):
            size = getattr(model, hidden)
            # RoPE rotates pairs of features: every head needs at least two
            require(size % self.heads == 0 and size // self.heads >= 2, f"{key}.heads", self.heads,
                    f"a divisor of {hidden} ({size}) leaving heads of >= 2 features")


def _allowed_keys(num_queries: int, num_cached: int, window: int | None) -> mx.array | str:
    """Mask for queries at positions num_cached.. against keys at 0..num_cached+num_queries-1.

    A query sees itself, every earlier key and, with a window W, only the last W keys up to and
    including itself.
    """
    if window is None:
        return "causal"  # MLX aligns it lower-right: the last query meets the last key
    q = mx.arange(num_queries)[:, None] + num_cached
    k = mx.arange(num_cached + num_queries)[None, :]
    return (k <= q) & (k > q - window)


class CausalSelfAttention(nn.Module):
    def __init__(self, dims: int, num_heads: int, window: int | None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dims // num_heads
        self.window = window
        self.qkv = nn.Linear(dims, 3 * dims, bias=False)
        self.out = nn.Linear(dims, dims)
        # mx.fast.rope rotates pairs of features: an odd last feature is left unrotated
        self.rope = nn.RoPE(self.head_dim - self.head_dim % 2)

    def __call__(self, x: mx.array, cache: dict | None, offset: mx.array) -> tuple[mx.array, dict]:
        b, t, d = x.shape
        q, k, v = mx.split(self.qkv(x), 3, axis=-1)
        # (B, T, D) -> (B, heads, T, head_dim)
        q, k, v = (a.reshape(b, t, self.num_heads, self.head_dim).transpose(0, 2, 1, 3) for a in (q, k, v))
        q = self.rope(q, offset=offset)
        k = self.rope(k, offset=offset)
        if cache is not None:
            k = mx.concatenate([cache["k"], k], axis=2)
            v = mx.concatenate([cache["v"], v], axis=2)
        num_cached = k.shape[2] - t
        mask = _allowed_keys(t, num_cached, self.window)
        y = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5, mask=mask)
        y = y.transpose(0, 2, 1, 3).reshape(b, t, d)
        if self.window is not None:  # later queries never look further back than this
            k, v = k[:, :, -self.window :], v[:, :, -self.window :]
        return self.out(y), {"k": k, "v": v}


class TransformerLayer(nn.Module):
    """LayerNorm -> causal attention -> residual; LayerNorm -> FFN -> residual."""

    def __init__(self, dims: int, num_heads: int, window: int | None, ffn_expand: int):
        super().__init__()
        self.norm_attn = nn.LayerNorm(dims)
        self.attn = CausalSelfAttention(dims, num_heads, window)
        self.norm_ffn = nn.LayerNorm(dims)
        self.ffn = nn.Sequential(nn.Linear(dims, ffn_expand * dims), nn.GELU(), nn.Linear(ffn_expand * dims, dims))

    def __call__(self, x: mx.array, cache: dict | None, offset: mx.array) -> tuple[mx.array, dict]:
        a, cache = self.attn(self.norm_attn(x), cache, offset)
        x = x + a
        return x + self.ffn(self.norm_ffn(x)), cache


class AttentionCore(nn.Module):
    """`num_layers` pre-norm transformer layers and a final LayerNorm, at width `dims`."""

    def __init__(self, dims: int, num_layers: int, num_heads: int, window: int | None, ffn_expand: int):
        super().__init__()
        self.dims = dims
        self.num_heads = num_heads
        self.layers = [TransformerLayer(dims, num_heads, window, ffn_expand) for _ in range(num_layers)]
        self.norm_out = nn.LayerNorm(dims)

    def _check_state(self, state: State, batch: int) -> None:
        want = f"None or {{'layers': [{{'k', 'v'}}] * {len(self.layers)}, 'offset'}} as returned by this backbone"
        if not isinstance(state, dict) or set(state) != {"layers", "offset"}:
            raise ValueError(f"SqueezedAttention: state must be {want}, got {type(state).__name__}")
        if len(state["layers"]) != len(self.layers):
            raise ValueError(
                f"SqueezedAttention: state has {len(state['layers'])} layers, this backbone has {len(self.layers)}"
            )
        off = state["offset"]
        if not isinstance(off, mx.array) or off.ndim != 0 or not mx.issubdtype(off.dtype, mx.integer):
            raise ValueError(f"SqueezedAttention: state['offset'] must be a scalar integer mx.array, got {off!r:.60}")
        head_dim = self.dims // self.num_heads
        for i, c in enumerate(state["layers"]):
            for name in ("k", "v"):
                a = c[name]
                if a.ndim != 4 or a.shape[0] != batch or a.shape[1] != self.num_heads or a.shape[3] != head_dim:
                    raise ValueError(
                        f"SqueezedAttention: state['layers'][{i}][{name!r}] must have shape "
                        f"({batch}, {self.num_heads}, cached, {head_dim}), got {tuple(a.shape)}"
                    )

    def __call__(self, x: mx.array, state: State = None) -> tuple[mx.array, State]:
        if x.shape[1] < 1:  # same contract as the recurrent backbones
            raise ValueError(f"SqueezedAttention: x must have at least one frame (time >= 1), got shape {tuple(x.shape)}")
        if state is None:
            caches, offset = [None] * len(self.layers), mx.array(0, dtype=mx.int32)
        else:
            self._check_state(state, x.shape[0])
            caches, offset = state["layers"], state["offset"]
        new_caches = []
        for layer, cache in zip(self.layers, caches):
            x, cache = layer(x, cache, offset)
            new_caches.append(cache)
        return self.norm_out(x), {"layers": new_caches, "offset": offset + x.shape[1]}


@register("attention", AttentionOptions)
class SqueezedAttention(Squeezed):
    """Grouped linear in -> causal transformer layers -> grouped linear out (+ skip).

    window=None: every frame attends to all earlier frames; window=W: to the last W frames
    (itself included), offline and streaming alike.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        *,
        num_layers: int = 2,
        num_heads: int = 4,
        window: int | None = None,
        ffn_expand: int = 2,
        linear_groups: int = 8,
        skip: bool = False,
        activation: bool = True,
    ):
        if num_layers < 1:
            raise ValueError(f"SqueezedAttention: num_layers must be >= 1, got {num_layers}")
        # RoPE rotates pairs of features: a head needs at least two, or it loses every position
        if num_heads < 1 or hidden_size % num_heads or hidden_size // num_heads < 2:
            raise ValueError(
                f"SqueezedAttention: hidden_size={hidden_size} must be divisible by num_heads={num_heads} (>= 1) "
                f"into heads of at least 2 features"
            )
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"SqueezedAttention: window must be None or an int >= 1, got {window!r}")
        if ffn_expand < 1:
            raise ValueError(f"SqueezedAttention: ffn_expand must be >= 1, got {ffn_expand}")
        core = AttentionCore(hidden_size, num_layers, num_heads, window, ffn_expand)
        super().__init__(
            input_size, hidden_size, output_size, core, linear_groups=linear_groups, skip=skip, activation=activation
        )
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.window = window
        self.ffn_expand = ffn_expand
