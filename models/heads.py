"""Order-aware audio heads: what lets a CLAP represent "A then B" (beyond the paper).

laion-clap's audio branches pool over time (PANN: mean + max; HTSAT: average) before the
projection, so the pooled embedding of "dog, then siren" and "siren, then dog" can only differ
through features that straddle the junction. A `TemporalHead` adds an ordered view:

    e = normalize(audio_projection(pooled) + head(tokens))

`tokens` are K ordered feature vectors of the clip, from one of two sources:
- "segments": the clip cut into K equal segments, each encoded by the same audio branch
  (its pooled embedding). Every token then describes one stretch of time and nothing else,
  which is what the small CPU model needs: at its 160 ms hop each frame of
  `fine_grained_embedding` already spans both events (docs/STACK-NOTES.md, "Order-aware heads").
  Costs one more pass of the branch over the clip's length.
- "frames": the branch's own `fine_grained_embedding` (frame-level, [B, T, C]) averaged into K
  time bins. Free, and fine for branches with a fine time step (LAION's HTSAT).

The head: tokens -> Linear + LayerNorm, + learned position embeddings, a small pre-norm
transformer, then the K token vectors *concatenated in time order* and projected to the joint
space. Concatenation keeps position explicit (delta ~ sum_k W_k f(token_k)), so an order learned
on some class pairs carries over to pairs never seen in training. The output projection starts
at zero: a fresh head gives exactly the pooled base embedding, and post-training starts from the
base's zero-shot skill.

`contrast: true` adds one more term, c(|h_2 - h_1|) (the mean over adjacent tokens for K > 2):
how much consecutive stretches of the clip differ, a feature that is the same whichever comes
first. The additive head is nearly linear in its tokens, so an overlay of a and b (both halves
hold a + b) lands near the midpoint of "a then b" and "b then a": "while" has no direction of
its own, and on class pairs never seen in post-training "a before b" and "a while b" were the
remaining confusion (BENCHMARKS.md). The contrast term gives every pair one shared "the halves
differ" direction (concatenations) vs "they do not" (overlays, single sounds). Zero-initialised
like the rest; with `antisymmetric` it is added outside the odd part (it is even in time).

`antisymmetric: true` makes the head a pure order detector: residual(t) = g(t) - g(reversed t).
A clip whose tokens read the same both ways (a repeat-padded single sound, an overlay of two
sounds over the whole clip) gets exactly 0, its pooled base embedding, and "A then B" gets
minus what "B then A" gets. So post-training on pairs cannot move single sounds through the
head, and a replay of single clips trains only the pooled path (BENCHMARKS.md, "Order
ablation": with a free head, replaying singles undid the held-out order gain).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

SOURCES = ("segments", "frames")
KINDS = ("pooled", "temporal")
# Named heads for --audio-head (besides "pooled"): "additive" has no mixer, so its residual is
# a sum over time positions, W_1 f(first) + W_2 f(second), whose order carried better to class
# pairs never seen in post-training than the transformer's; "additive_contrast" adds the
# contrast term (the module docstring), the demo's head (BENCHMARKS.md, "Order ablation").
PRESETS = {"temporal": {}, "additive": {"layers": 0},
           "additive_contrast": {"layers": 0, "contrast": True},
           "moment_contrast": {"layers": 0, "tokens": 4, "moment": True, "contrast": True,
                               "positional": False}}


@dataclass(frozen=True)
class HeadSpec:
    """The `audio_head` section of a model config (JSON)."""
    type: str = "temporal"          # "pooled" (no head) | "temporal"
    source: str = "segments"        # "segments" | "frames" (see the module docstring)
    tokens: int = 2                 # K ordered tokens (segments or time bins)
    width: int = 256
    layers: int = 1                 # 0: no mixer, each token on its own (additive over time)
    heads: int = 4
    antisymmetric: bool = False     # residual(t) = g(t) - g(t reversed in time)
    contrast: bool = False          # + c(|h_2 - h_1|): do consecutive tokens differ (even in time)
    moment: bool = False            # + m(sum_k (tau_k - mean tau) h_k): where content sits in time
    positional: bool = True         # the per-position term (tokens concatenated in time order)

    @classmethod
    def parse(cls, value) -> "HeadSpec | None":
        """None / "pooled" -> None (laion's pooled embedding); "temporal" -> defaults;
        "additive" -> no mixer (`layers` 0); a dict -> those fields. Unknown names, fields or
        values raise ValueError naming the accepted ones."""
        if value is None or value == "pooled" or (isinstance(value, dict)
                                                  and value.get("type") == "pooled"):
            return None
        if isinstance(value, str) and value in PRESETS:
            value = {**PRESETS[value]}
        if not isinstance(value, dict):
            raise ValueError(f"audio_head must be 'pooled', one of {sorted(PRESETS)} or a dict of "
                             f"{[f.name for f in fields(cls)]}, got {value!r}")
        unknown = sorted(set(value) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"audio_head: unknown field(s) {unknown}; fields: "
                             f"{[f.name for f in fields(cls)]}")
        spec = cls(**value)
        if spec.type not in KINDS:
            raise ValueError(f"audio_head.type must be one of {KINDS}, got {spec.type!r}")
        if spec.source not in SOURCES:
            raise ValueError(f"audio_head.source must be one of {SOURCES}, got {spec.source!r}")
        for name in ("antisymmetric", "contrast", "moment", "positional"):
            if not isinstance(getattr(spec, name), bool):
                raise ValueError(f"audio_head.{name} must be true or false, got "
                                 f"{getattr(spec, name)!r}")
        for name in ("tokens", "width", "layers", "heads"):
            least = 0 if name == "layers" else 1
            if int(getattr(spec, name)) < least:
                raise ValueError(f"audio_head.{name} must be >= {least}, got "
                                 f"{getattr(spec, name)}")
        if not (spec.positional or spec.contrast or spec.moment):
            raise ValueError("audio_head: positional, contrast and moment are all off; the "
                             "head would add nothing")
        if spec.width % spec.heads:
            raise ValueError(f"audio_head.width ({spec.width}) must be a multiple of "
                             f"audio_head.heads ({spec.heads})")
        return spec

    def to_dict(self) -> dict:
        return asdict(self)


class TemporalHead(nn.Module):
    """K ordered tokens of `in_dim` -> a [B, out_dim] residual for the pooled projection."""

    def __init__(self, spec: HeadSpec, in_dim: int, out_dim: int):
        super().__init__()
        self.spec = spec
        self.inp = nn.Sequential(nn.Linear(in_dim, spec.width), nn.LayerNorm(spec.width))
        if spec.positional:  # (in this order, so a seed gives the heads it always gave)
            self.position = nn.Parameter(torch.randn(spec.tokens, spec.width) * 0.02)
            if spec.layers:
                layer = nn.TransformerEncoderLayer(spec.width, spec.heads, 2 * spec.width,
                                                   dropout=0.0, batch_first=True, norm_first=True)
                self.mixer = nn.TransformerEncoder(layer, spec.layers, enable_nested_tensor=False)
            else:  # each token alone: the residual is a sum over time positions of W_k f(token_k)
                self.mixer = nn.Identity()
            self.norm = nn.LayerNorm(spec.width)
            self.out = _zero_linear(spec.tokens * spec.width, out_dim)  # a fresh head adds 0
        if spec.contrast:
            self.contrast = _zero_linear(spec.width, out_dim)  # starts at the base too
        if spec.moment:
            self.moment = _zero_linear(spec.width, out_dim)
            # token k's centre in time, centred on the clip's: odd in time by construction
            tau = (torch.arange(spec.tokens, dtype=torch.float32) + 0.5) / spec.tokens
            self.register_buffer("tau", tau - tau.mean(), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[1] != self.spec.tokens:
            raise ValueError(f"TemporalHead wants [batch, {self.spec.tokens}, features], got "
                             f"{tuple(tokens.shape)}")
        h = self.inp(tokens)
        residual = 0
        if self.spec.positional and self.spec.antisymmetric:
            both = self._g(torch.cat([h, h.flip(1)]))  # one pass for the two readings
            forward, backward = both.chunk(2)
            residual = forward - backward
        elif self.spec.positional:
            residual = self._g(h)
        if self.spec.moment:
            # "a then b" with the junction at j: ~ j (1 - j) (h_b - h_a) wherever j falls;
            # the reversed clip gets the opposite, an overlay or a steady sound ~ 0
            residual = residual + self.moment(torch.einsum("k,bkw->bw", self.tau, h))
        if self.spec.contrast:
            # mean |difference| of neighbours; with K == 1 the sum is empty, i.e. 0
            step = (h[:, 1:] - h[:, :-1]).abs().sum(1) / max(h.shape[1] - 1, 1)
            residual = residual + self.contrast(step)
        return residual

    def _g(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.mixer(h + self.position))
        return self.out(h.flatten(1))


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear output layer that starts at exactly zero (a fresh head is the base model)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def split_segments(wave: torch.Tensor, k: int) -> torch.Tensor:
    """[B, T] -> [B * K, T // K]: K equal consecutive segments per clip, clip-major (the tail
    that does not divide is dropped: at most K - 1 samples)."""
    b, t = wave.shape
    n = t // k
    return wave[:, :n * k].reshape(b * k, n)


def frame_tokens(frames: torch.Tensor, k: int) -> torch.Tensor:
    """fine_grained_embedding [B, T, C] -> [B, K, C], the mean of K equal time bins."""
    return F.adaptive_avg_pool1d(frames.transpose(1, 2), k).transpose(1, 2)
