"""Recipes for composed samples and the one function that renders them.

A `SampleRecipe` is one row of the `samples` table: everything needed to re-create the audio
from the source waveforms. Random choices (the overlay SNR, augmentation seeds) are drawn when
the recipe is made, from a generator seeded by (build seed, group key), so any group renders
alone, in any process, in any order. Quantities that follow from the audio (the window cut from
a long source, loudness gains, the limiter gain) are computed by `render` and recorded by the
builder; rendering is pure, so the same recipe and sources give the same samples bit for bit.

Layout of a composite of `num_samples` samples (default 10 s at 48 kHz):
- concatenations (double, forward, reversed): two slots of half the length each, placed at the
  recipe's `offsets`; a part longer than its slot is cut to the slot's highest-energy window, a
  shorter one is zero-padded (padding by repetition would put the same event twice in a row).
- single and overlay: each part is fitted to the full length; longer parts are cut to their
  highest-energy window, shorter ones padded by the recipe's `pad` policy ("repeat": LAION-CLAP's
  repeat-pad, the default; "zero").
- reversed swaps the order of the two events; the waveforms are not time-reversed.
Each part's content (after the cut, before padding) is loudness-normalised to TARGET_DB (silent
parts are left as they are; padding does not count, so a short clip is not boosted), then
augmented when the recipe has an augmentation spec (seeded per group and source, so the members
of a group share their parts), b is mixed
under a at the recipe's SNR for overlays, and the composite is peak-limited to CEILING so that
the encoded audio never clips.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from teminal.pipeline.pairing import derive_seed
from teminal.pipeline.sources.base import SourceClip, sanitize_id

STAGE_RELATIONS = {"a": ("single", "double"), "b": ("forward", "reversed", "overlay")}
CONCATENATIONS = frozenset({"double", "forward", "reversed"})
PAD_POLICIES = ("repeat", "zero")
TARGET_DB = -20.0   # loudness of every part before mixing (dBFS RMS)
CEILING = 0.99      # peak limit of the composite (linear full scale)


@dataclass(frozen=True)
class ComposeConfig:
    """What shapes every rendered sample; part of the build id."""
    sample_rate: int = 48000
    clip_seconds: float = 10.0
    pad: str = "repeat"
    snr_range: tuple[float, float] = (-5.0, 5.0)
    template_set: str = "paper"
    augment: str | None = None      # audiomentations chain spec for teminal.pipeline.augment
    key_prefix: str = "esc50"       # group keys look like <prefix>-<stage>-<split>-000123

    def __post_init__(self):
        if self.pad not in PAD_POLICIES:
            raise ValueError(f"pad policy {self.pad!r} is not one of {PAD_POLICIES}")
        import math

        if len(self.snr_range) != 2:
            raise ValueError(f"--snr-range {self.snr_range}: give two numbers LOW,HIGH in dB, "
                             f"for example -5,5")
        lo, hi = self.snr_range
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and -60 <= v <= 60
                   for v in (lo, hi)):
            raise ValueError(f"--snr-range {lo},{hi}: both ends must be finite dB values in "
                             f"-60..60, for example -5,5")
        if lo > hi:
            raise ValueError(f"--snr-range {lo},{hi}: the low end is above the high end "
                             f"(snr_range is LOW,HIGH)")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or \
                not 1000 <= self.sample_rate <= 384_000:
            raise ValueError(f"--sample-rate {self.sample_rate!r}: give whole Hz in "
                             f"1000..384000 (48000 for LAION-CLAP, 16000 for the small model)")
        if not (isinstance(self.clip_seconds, (int, float)) and math.isfinite(self.clip_seconds)
                and 0.1 <= self.clip_seconds <= 600):
            raise ValueError(f"--clip-seconds {self.clip_seconds!r}: give a finite number of "
                             f"seconds in 0.1..600")

    @property
    def num_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["snr_range"] = list(self.snr_range)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ComposeConfig":
        d = {k: d[k] for k in (f.name for f in dataclasses.fields(cls)) if k in d}
        if "snr_range" in d:
            d["snr_range"] = tuple(float(v) for v in d["snr_range"])
        return cls(**d)


@dataclass
class SampleRecipe:
    """One rendered member; field order is the column order of the `samples` table."""
    key: str                                  # "<group_key>.<relation>"
    group_key: str
    stage: str
    split: str
    relation: str
    shard: str = ""                           # tar path relative to OUT, set by the builder
    source_ids: list[str] = field(default_factory=list)        # temporal order
    labels: list[str | None] = field(default_factory=list)     # same order
    caption: str = ""
    captions: list[str] = field(default_factory=list)
    template_ids: list[str] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)         # where each part starts (s)
    gains_db: list[float] = field(default_factory=list)        # total gain per part (set by render)
    snr_db: float | None = None                                # overlay only: level of a over b
    augment: str = "{}"                                        # JSON: {"spec", "parts": [params]}
    seed: int = 0                                              # group seed: same parts in a group
    sample_rate: int = 48000
    num_samples: int = 480000
    sha256: str = ""                                           # of the stored member bytes
    dataset: str = ""
    build_id: str = ""
    source_offsets: list[float] = field(default_factory=list)  # where each part was cut (s)
    pad: str = "repeat"

    def to_dict(self) -> dict:
        # fields are flat values and lists of them: a shallow copy (asdict's deep copy is slow)
        return {f: (list(v) if isinstance(v, list) else v)
                for f in _RECIPE_FIELDS for v in (getattr(self, f),)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "SampleRecipe":
        d = {k: d[k] for k in (f.name for f in dataclasses.fields(cls)) if k in d}
        for name in ("source_ids", "labels", "captions", "template_ids", "offsets", "gains_db",
                     "source_offsets"):
            if name in d:
                d[name] = list(d[name]) if d[name] is not None else []
        return cls(**d)


_RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(SampleRecipe))


@dataclass
class Rendering:
    audio: np.ndarray              # float32 [num_samples]
    gains_db: list[float]          # per part, temporal order (normalisation + SNR + limiter)
    source_offsets: list[float]    # seconds into each source where its part starts
    augment: list[dict]            # augmentation parameters per part ([] when off)


def group_key(prefix: str, stage: str, split: str, index: int) -> str:
    return sanitize_id(f"{prefix}-{stage}-{split}-{index:06d}")


def make_group_recipes(stage: str, split: str, index: int, a: SourceClip, b: SourceClip,
                       config: ComposeConfig, seed: int) -> list[SampleRecipe]:
    """The recipes of one group (all relations of `stage` for the pair a, b)."""
    from teminal.pipeline.captions import (caption_text, is_captioned, render_captions,
                                           resolve_template_set)
    from teminal.pipeline.sources.captioned import caption_for_slot

    if stage not in STAGE_RELATIONS:
        raise ValueError(f"unknown stage {stage!r}; stages are {sorted(STAGE_RELATIONS)}")
    gkey = group_key(config.key_prefix, stage, split, index)
    gseed = derive_seed(seed, gkey)
    rng = np.random.default_rng(gseed)
    lo, hi = config.snr_range
    snr = round(float(rng.uniform(lo, hi)), 2) if hi > lo else float(lo)
    n = config.num_samples
    half = n // 2
    augment = json.dumps({"spec": config.augment}, sort_keys=True) if config.augment else "{}"
    # A captioned clip (no label) appears in captions as one of its captions, drawn per group
    # (after the SNR, so labelled groups draw exactly what they drew before captions existed).
    template_set = resolve_template_set(config.template_set, is_captioned(a))
    text_a, text_b = (caption_for_slot(c, rng) if is_captioned(c) else caption_text(c)
                      for c in (a, b))
    recipes = []
    for relation in STAGE_RELATIONS[stage]:
        if relation == "single":
            parts, offsets = [a], [0.0]
        elif relation == "reversed":
            parts, offsets = [b, a], [0.0, half / config.sample_rate]
        elif relation == "overlay":
            parts, offsets = [a, b], [0.0, 0.0]
        else:
            parts, offsets = [a, b], [0.0, half / config.sample_rate]
        caption, captions, template_ids = render_captions(
            relation, text_a, None if relation == "single" else text_b, template_set)
        recipes.append(SampleRecipe(
            key=f"{gkey}.{relation}", group_key=gkey, stage=stage, split=split,
            relation=relation, source_ids=[p.source_id for p in parts],
            labels=[p.label for p in parts], caption=caption, captions=list(captions),
            template_ids=list(template_ids), offsets=offsets,
            snr_db=snr if relation == "overlay" else None, augment=augment, seed=gseed,
            sample_rate=config.sample_rate, num_samples=n, dataset=a.dataset, pad=config.pad))
    return recipes


def render(recipe: SampleRecipe, waves: Mapping[str, np.ndarray]) -> np.ndarray:
    """The audio of `recipe` (float32, recipe.num_samples long) from the sources' waveforms,
    `waves[source_id]` as returned by load_source at recipe.sample_rate."""
    return render_detailed(recipe, waves).audio


def render_detailed(recipe: SampleRecipe, waves: Mapping[str, np.ndarray],
                    cache: dict | None = None) -> Rendering:
    """`render`, plus what it measured. `cache` (a dict kept for the members of one group)
    shares the prepared parts between members; the output is the same with or without it."""

    missing = [s for s in recipe.source_ids if s not in waves]
    if missing:
        raise KeyError(f"render {recipe.key}: no waveform for source(s) {missing}")
    n, sr = recipe.num_samples, recipe.sample_rate
    spec = json.loads(recipe.augment or "{}").get("spec")
    starts = [int(round(o * sr)) for o in recipe.offsets]
    concat = recipe.relation in CONCATENATIONS
    # Slot of each part: up to the next part's start for concatenations, the whole length else.
    ends = (starts[1:] + [n]) if concat else [n] * len(starts)
    cache = {} if cache is None else cache

    out = np.empty(n, dtype=np.float32) if concat else np.zeros(n, dtype=np.float32)
    covered = 0   # concatenations: samples written so far; the rest of each slot is zeroed
    gains, cuts, aug_params = [], [], []
    for i, sid in enumerate(recipe.source_ids):
        length = ends[i] - starts[i]
        x, gain, cut, params = _prepared_part(waves[sid], sid, length, sr, spec, recipe.seed, cache)
        if spec:
            aug_params.append(params)
        if recipe.relation == "overlay" and i == 1 and recipe.snr_db is not None:
            # b sits snr_db below a (both parts are at TARGET_DB here)
            x = x * np.float32(10.0 ** (-recipe.snr_db / 20.0))
            gain -= recipe.snr_db
        if concat:
            # concatenation slots are zero-padded: the part simply ends early; slots are disjoint
            out[covered:starts[i]] = 0
            out[starts[i]:starts[i] + len(x)] = x
            covered = starts[i] + len(x)
        else:
            _add_padded(out, starts[i], length, x, recipe.pad)
        gains.append(float(gain))
        cuts.append(cut / sr)
    if concat:
        out[covered:] = 0
    out, limit_db = _peak_limit(out, CEILING)
    gains = [round(g + float(limit_db), 6) for g in gains]
    return Rendering(np.ascontiguousarray(out, dtype=np.float32), gains, cuts, aug_params)


def _add_padded(out: np.ndarray, start: int, length: int, x: np.ndarray, policy: str) -> None:
    """out[start:start+length] += x padded to `length` by `policy` ("repeat": x tiled, as
    audio.fit_to_length does; "zero": x then silence), without building the padded copy."""
    if policy not in PAD_POLICIES:
        raise ValueError(f"pad policy {policy!r} is not one of {PAD_POLICIES}")
    m = len(x)
    if m == 0:
        return
    pos = 0
    while pos < length:
        k = min(m, length - pos)
        out[start + pos:start + pos + k] += x[:k]
        pos += k
        if policy == "zero":
            break


def _peak_limit(x: np.ndarray, ceiling: float) -> tuple[np.ndarray, float]:
    """audio.peak_limit (scale down so max |y| <= ceiling; same gain, same bits) with fewer passes
    over the buffer: this runs once per rendered member."""
    peak = max(float(x.max()), -float(x.min())) if x.size else 0.0
    if peak <= ceiling:
        return x, 0.0
    gain = np.float32(ceiling / peak)
    y = x * gain
    while max(float(y.max()), -float(y.min())) > ceiling:  # float32 rounding: one ulp over
        gain = np.nextafter(gain, np.float32(0))
        y = x * gain
    return y, float(20.0 * np.log10(float(gain)))


def _prepared_part(wave: np.ndarray, sid: str, length: int, sr: int, spec, seed: int,
                   cache: dict) -> tuple[np.ndarray, float, int, dict]:
    """The sound content of a part before padding: cut to its slot's highest-energy window when
    longer, loudness-normalised on that content (so padding never inflates the gain), then
    augmented (after normalisation, which would undo a gain step; seeded by group and source, so
    every member of a group hears the same parts). Returns (content, gain_db, cut start, params)."""
    from teminal.pipeline import audio as A

    wave = np.asarray(wave, dtype=np.float32)
    cut = int(A.highest_energy_window(wave, length)) if len(wave) > length else 0
    content = wave[cut:cut + length]
    key = (sid, cut, len(content), spec, seed)
    if key not in cache:
        x, gain = A.normalize_loudness(content, TARGET_DB)
        params: dict = {}
        if spec:
            x, params = _augment(x, sr, spec, derive_seed(seed, "augment", sid))
        x.setflags(write=False)  # shared between members of the group
        cache[key] = (x, float(gain), params)
    x, gain, params = cache[key]
    return x, gain, cut, params


def _augment(x: np.ndarray, sr: int, spec: str, seed: int) -> tuple[np.ndarray, dict]:
    y, params = _augment_chain(spec)(x, sr, seed)
    return np.asarray(y, dtype=np.float32), params


@functools.lru_cache(maxsize=8)
def _augment_chain(spec: str):
    from teminal.pipeline.augment import AugmentChain

    return AugmentChain(spec)


def augment_json(recipe: SampleRecipe, params: Sequence[dict]) -> str:
    """The `augment` column after rendering: the chain spec and each part's drawn parameters."""
    spec = json.loads(recipe.augment or "{}").get("spec")
    if not spec:
        return "{}"
    return json.dumps({"spec": spec, "parts": list(params)}, sort_keys=True, default=_jsonable)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
