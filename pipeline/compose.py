"""Recipes for composed samples and the one function that renders them.

A `SampleRecipe` is one row of the `samples` table: everything needed to re-create the audio
from the source waveforms, as a lhotse MixedCut holds its cuts' offsets and augmentations.
Every choice is made when the recipe is planned (`make_group_recipes`), from the group's seed
(build seed, group key) and the source waveforms: the overlay SNR, the window cut from each long
source (`source_offsets`), each part's augmentation parameters (`augment`), and the loudness
target and ceiling of the config. `render` only reads the recipe back, so any group renders
alone, in any process, in any order, and the same recipe and sources give the same samples bit
for bit. What follows from the audio (the loudness and limiter gains) is measured by `render`
and recorded in `gains_db`; render never reads it.

Layout of a composite of `num_samples` samples (default 10 s at 48 kHz):
- concatenations (double, forward, reversed): two slots of half the length each, placed at the
  recipe's `offsets`; a part longer than its slot is cut to the slot's highest-energy window, a
  shorter one is zero-padded (padding by repetition would put the same event twice in a row).
- single and overlay: each part is fitted to the full length; longer parts are cut to their
  highest-energy window, shorter ones padded by the recipe's `pad` policy ("repeat": LAION-CLAP's
  repeat-pad, the default; "zero").
- reversed swaps the order of the two events; the waveforms are not time-reversed.
Each part's content (after the cut, before padding) is loudness-normalised to the recipe's
`target_db` (silent parts are left as they are; padding does not count, so a short clip is not
boosted), then augmented with the recipe's recorded parameters (drawn per group and source, so
the members of a group share their parts), b is mixed under a at the recipe's SNR for overlays,
and the composite is peak-limited to the recipe's `ceiling` so that the encoded audio never clips.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from teminal.pipeline.pairing import derive_seed
from teminal.pipeline.sources.base import SourceClip, sanitize_id

STAGE_RELATIONS = {"a": ("single", "double"), "b": ("forward", "reversed", "overlay")}
CONCATENATIONS = frozenset({"double", "forward", "reversed"})
PAD_POLICIES = ("repeat", "zero")
TARGET_DB = -20.0   # default loudness of every part before mixing (dBFS RMS)
CEILING = 0.99      # default peak limit of the composite (linear full scale)
# 1: cuts and augmentation were measured while rendering and written afterwards;
# 2: they are chosen when the recipe is planned and render reads them back.
RECIPE_VERSION = 2


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
    target_db: float = TARGET_DB    # loudness of every part before mixing (dBFS RMS)
    ceiling: float = CEILING        # peak limit of the composite (linear full scale)

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
        if not 0.0 < self.ceiling <= 1.0:
            raise ValueError(f"ceiling {self.ceiling}: the peak limit must be in (0, 1] (full scale)")
        if not -100.0 <= self.target_db < 0.0:
            raise ValueError(f"target_db {self.target_db}: the loudness target must be in "
                             "[-100, 0) dBFS")

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
    gains_db: list[float] = field(default_factory=list)        # total gain per part (measured by render)
    snr_db: float | None = None                                # overlay only: level of a over b
    augment: str = "{}"                                        # JSON: {"spec", "parts": [params]} (planned)
    seed: int = 0                                              # group seed: same parts in a group
    sample_rate: int = 48000
    num_samples: int = 480000
    sha256: str = ""                                           # of the stored member bytes
    dataset: str = ""
    build_id: str = ""
    source_offsets: list[float] = field(default_factory=list)  # where each part is cut (s, planned)
    pad: str = "repeat"
    target_db: float = TARGET_DB                               # loudness of each part (dBFS RMS)
    ceiling: float = CEILING                                   # peak limit of the composite
    recipe_version: int = RECIPE_VERSION

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
        d.setdefault("recipe_version", 1)   # rows written before the column existed
        return cls(**d)


_RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(SampleRecipe))


@dataclass
class Rendering:
    audio: np.ndarray              # float32 [num_samples]
    gains_db: list[float]          # per part, temporal order (normalisation + SNR + limiter)


def group_key(prefix: str, stage: str, split: str, index: int) -> str:
    return sanitize_id(f"{prefix}-{stage}-{split}-{index:06d}")


def make_group_recipes(stage: str, split: str, index: int, a: SourceClip, b: SourceClip,
                       config: ComposeConfig, seed: int,
                       waves: Mapping[str, np.ndarray]) -> list[SampleRecipe]:
    """The recipes of one group (all relations of `stage` for the pair a, b), planned in full:
    `waves` (the two sources at config.sample_rate) decide where long sources are cut."""
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
            snr_db=snr if relation == "overlay" else None, seed=gseed,
            sample_rate=config.sample_rate, num_samples=n, dataset=a.dataset, pad=config.pad,
            target_db=float(config.target_db), ceiling=float(config.ceiling)))
    cuts: dict = {}
    for recipe in recipes:
        plan_parts(recipe, waves, config.augment, cuts)
    return recipes


def _slots(recipe: SampleRecipe) -> tuple[list[int], list[int]]:
    """(start, end) sample of each part's slot: up to the next part's start for
    concatenations, the whole length otherwise."""
    n, sr = recipe.num_samples, recipe.sample_rate
    starts = [int(round(o * sr)) for o in recipe.offsets]
    ends = (starts[1:] + [n]) if recipe.relation in CONCATENATIONS else [n] * len(starts)
    return starts, ends


def plan_parts(recipe: SampleRecipe, waves: Mapping[str, np.ndarray], augment_spec=None,
               cuts: dict | None = None) -> SampleRecipe:
    """Choose, and write into the recipe, what `render` will read: where each part is cut from
    its source (the slot's highest-energy window of a longer source, else its start) and each
    part's augmentation parameters (drawn from the group seed and the source id, so the members
    of a group share their parts). `cuts` caches windows per (source, slot length)."""
    from teminal.pipeline import audio as A

    missing = [s for s in recipe.source_ids if s not in waves]
    if missing:
        raise KeyError(f"plan {recipe.key}: no waveform for source(s) {missing}")
    cuts = {} if cuts is None else cuts
    starts, ends = _slots(recipe)
    offsets = []
    for sid, start, end in zip(recipe.source_ids, starts, ends):
        length, wave = end - start, waves[sid]
        if (sid, length) not in cuts:
            cuts[(sid, length)] = (int(A.highest_energy_window(np.asarray(wave, dtype=np.float32), length))
                                   if len(wave) > length else 0)
        offsets.append(cuts[(sid, length)] / recipe.sample_rate)
    recipe.source_offsets = offsets
    if augment_spec:
        chain = _augment_chain(augment_spec)
        parts = [chain.draw(derive_seed(recipe.seed, "augment", sid), recipe.sample_rate)
                 for sid in recipe.source_ids]
        recipe.augment = json.dumps({"spec": augment_spec, "parts": parts}, sort_keys=True,
                                    default=_jsonable)
    else:
        recipe.augment = "{}"
    return recipe


def render(recipe: SampleRecipe, waves: Mapping[str, np.ndarray]) -> np.ndarray:
    """The audio of `recipe` (float32, recipe.num_samples long) from the sources' waveforms,
    `waves[source_id]` as returned by load_source at recipe.sample_rate."""
    return render_detailed(recipe, waves).audio


def render_detailed(recipe: SampleRecipe, waves: Mapping[str, np.ndarray],
                    cache: dict | None = None) -> Rendering:
    """`render`, plus the gains it measured. `cache` (a dict kept for the members of one group)
    shares the prepared parts between members; the output is the same with or without it."""
    if recipe.recipe_version != RECIPE_VERSION:
        raise ValueError(
            f"recipe {recipe.key} is version {recipe.recipe_version}; this teminal renders "
            f"version {RECIPE_VERSION} (cuts and augmentation chosen when planned): rebuild it")
    missing = [s for s in recipe.source_ids if s not in waves]
    if missing:
        raise KeyError(f"render {recipe.key}: no waveform for source(s) {missing}")
    if len(recipe.source_offsets) != len(recipe.source_ids):
        raise ValueError(f"render {recipe.key}: {len(recipe.source_offsets)} source_offsets for "
                         f"{len(recipe.source_ids)} parts; plan the recipe first "
                         "(compose.make_group_recipes or plan_parts)")
    n, sr = recipe.num_samples, recipe.sample_rate
    augment = json.loads(recipe.augment or "{}")
    spec, part_params = augment.get("spec"), augment.get("parts") or []
    if spec and len(part_params) != len(recipe.source_ids):
        raise ValueError(f"render {recipe.key}: augmentation parameters for {len(part_params)} "
                         f"of {len(recipe.source_ids)} parts; plan the recipe first")
    starts, ends = _slots(recipe)
    concat = recipe.relation in CONCATENATIONS
    cache = {} if cache is None else cache

    out = np.empty(n, dtype=np.float32) if concat else np.zeros(n, dtype=np.float32)
    covered = 0   # concatenations: samples written so far; the rest of each slot is zeroed
    gains = []
    # A concatenation holds each part's samples once, plus zeros: its extremes are the parts'
    # (known from the cache, shared by the members of a group), so no pass over the composite.
    hi = lo = np.float32(0)
    known = concat
    for i, sid in enumerate(recipe.source_ids):
        length = ends[i] - starts[i]
        cut = int(round(recipe.source_offsets[i] * sr))
        x, gain, (x_hi, x_lo) = _prepared_part(waves[sid], sid, cut, length, sr, recipe.target_db,
                                               spec, part_params[i] if spec else None, cache)
        hi, lo = max(hi, x_hi), min(lo, x_lo)
        known &= len(x) <= length   # (an augmentation that lengthened a part spills over)
        if recipe.relation == "overlay" and i == 1 and recipe.snr_db is not None:
            # b sits snr_db below a (both parts are at target_db here)
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
    if concat:
        out[covered:] = 0
    out, limit_db = _peak_limit(out, recipe.ceiling, (hi, lo) if known else None)
    gains = [round(g + float(limit_db), 6) for g in gains]
    return Rendering(np.ascontiguousarray(out, dtype=np.float32), gains)


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


def _peak_limit(x: np.ndarray, ceiling: float,
                extremes: tuple[np.float32, np.float32] | None = None) -> tuple[np.ndarray, float]:
    """audio.peak_limit (scale down so max |y| <= ceiling; same gain, same bits) with fewer passes
    over the buffer, which it scales in place: this runs once per rendered member.

    `extremes` (max, min) of `x` when the caller knows them. The limiter's check needs no pass
    over the scaled buffer: float32 rounding is monotonic, so max(x * g) == float32(max(x) * g)
    (and likewise for the min) for a gain g > 0."""
    if not x.size:
        return x, 0.0
    hi, lo = extremes if extremes is not None else (x.max(), x.min())
    hi, lo = np.float32(hi), np.float32(lo)
    peak = max(float(hi), -float(lo))
    if peak <= ceiling:
        return x, 0.0
    gain = np.float32(ceiling / peak)
    while max(float(hi * gain), -float(lo * gain)) > ceiling:  # float32 rounding: one ulp over
        gain = np.nextafter(gain, np.float32(0))
    np.multiply(x, gain, out=x)
    return x, float(20.0 * np.log10(float(gain)))


def _prepared_part(wave: np.ndarray, sid: str, cut: int, length: int, sr: int, target_db: float,
                   spec, params: dict | None, cache: dict) -> tuple[np.ndarray, float, tuple]:
    """The sound content of a part before padding: the planned window of its slot's length,
    loudness-normalised on that content (so padding never inflates the gain), then augmented
    with the planned parameters (after normalisation, which would undo a gain step). Returns
    (content, gain_db, (max, min)); cached per part, since every member of a group hears the
    same parts (and, without augmentation, every group of a shard that uses the source)."""
    from teminal.pipeline import audio as A

    # Keyed by the content it is made of: a 5 s source in a 5 s slot (concatenations) and in a
    # 10 s slot (overlay) is one part, normalised once.
    end = min(cut + length, len(wave))
    key = (sid, cut, end, target_db, json.dumps(params, sort_keys=True) if params else None)
    if key not in cache:
        content = np.asarray(wave, dtype=np.float32)[cut:end]
        x, gain = A.normalize_loudness(content, target_db)
        if spec and params:
            x = np.asarray(_augment_chain(spec).apply(x, sr, params), dtype=np.float32)
        x.setflags(write=False)  # shared between members of the group
        extremes = (x.max(), x.min()) if x.size else (np.float32(0), np.float32(0))
        cache[key] = (x, float(gain), extremes)
    return cache[key]


@functools.lru_cache(maxsize=8)
def _augment_chain(spec: str):
    from teminal.pipeline.augment import AugmentChain

    return AugmentChain(spec)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
