"""Recipes for composed samples and the one function that renders them.

A `SampleRecipe` is one row of the `samples` table: everything needed to re-create the audio
from the source waveforms, as a lhotse MixedCut holds its cuts' offsets and augmentations.
Every choice is made when the recipe is planned (`make_group_recipes`), from the group's seed
(build seed, group key) and the source waveforms: the overlay SNR, the timing (where each part
starts, `offsets`, and how long its slot is, `slot_lengths`), the window cut from each long
source (`source_offsets`), each part's augmentation parameters (`augment`), and the loudness
target and ceiling of the config. `render` only reads the recipe back, so any group renders
alone, in any process, in any order, and the same recipe and sources give the same samples bit
for bit. What follows from the audio (the loudness and limiter gains) is measured by `render`
and recorded in `gains_db`; render never reads it.

Layout of a composite of `num_samples` samples (default 10 s at 48 kHz):
- concatenations (double, forward, reversed): two slots, placed at the recipe's `offsets`; a
  part longer than its slot is cut to the slot's highest-energy window, a shorter one is
  zero-padded (padding by repetition would put the same event twice in a row).
- single and overlay: each part is fitted from its offset to the end of the clip; longer parts
  are cut to their highest-energy window, shorter ones padded by the recipe's `pad` policy
  ("repeat": LAION-CLAP's repeat-pad, the default; "zero").
- reversed swaps the order of the two events; the waveforms are not time-reversed.
Each part's content (after the cut, before padding) is loudness-normalised to the recipe's
`target_db` (silent parts are left as they are; padding does not count, so a short clip is not
boosted), then augmented with the recipe's recorded parameters (drawn per group and source, so
the members of a group share their parts), b is mixed under a at the recipe's SNR for overlays,
and the composite is peak-limited to the recipe's `ceiling` so that the encoded audio never clips.

Timing (`ComposeConfig.junction`, `gap`, `overlay_start`; `pipeline build --junction`, `--gap`,
`--overlay-start`). By default every concatenation has its junction at the middle (sample
n // 2 of both members), the paper's protocol: those recipes are version 2, carry no
`slot_lengths` (each slot ends where the next part starts) and are byte for byte what builds
made before timing existed wrote. Any other setting is drawn per group (`draw_timing`, each
quantity from its own stream derived from the group seed, so nothing a group drew before moves,
and changing one range does not move the others' draws) and planned into version-3 recipes
that record every part's `slot_lengths` (`plan_layout`), J, G and S below in samples:
- double and forward: a fills [0, J - G), silence [J - G, J), b fills [J, n): the second event
  starts at the junction J = floor(j * n); the gap G = round(g * sample_rate) is taken from the
  first slot.
- reversed is the same pair in the other order with each event keeping its own slot length:
  b fills [0, n - J), silence, a fills [n - J + G, n); its second event starts at the mirrored
  point, 1 - j (plus the gap). Mirrored, not the same fraction, because then forward and
  reversed hold the same two sounds for the same durations and differ in order alone: at the
  same fraction a fixed junction of 0.3 would make "the event that fills 30% of the clip comes
  first" true of every forward clip and false of every reversed one, a cue an order-blind
  (pooled) model can use without hearing order.
- overlay: a fills the clip; b starts at S = floor(s * n) and is fitted from there to the end
  of the clip like any overlay part (cut to its highest-energy window of n - S samples, or
  padded by `pad`), so a plays alone for S samples and then both play: a partial overlap is
  still "while".
- single: one part over the whole clip.
Each event keeps at least `min_event_seconds(clip_seconds)` (0.5 s, or 0.1 of the clip when
that is shorter); `check_timing` refuses ranges that could leave less. `retime` re-plans one
recipe at another junction (the timing sweep of ZSTE), exactly as a build with that fixed
`--junction` and the recipe's gap plans it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from teminal.manifests.vocabulary import CONCATENATIONS, STAGE_RELATIONS, sample_key
from teminal.pipeline.audio import padding_spans, peak_limit
from teminal.pipeline.pairing import derive_seed
from teminal.pipeline.sources.base import SourceClip, sanitize_id

PAD_POLICIES = ("repeat", "zero")
TARGET_DB = -20.0   # default loudness of every part before mixing (dBFS RMS)
CEILING = 0.99      # default peak limit of the composite (linear full scale)
# 1: cuts and augmentation were measured while rendering and written afterwards;
# 2: they are chosen when the recipe is planned and render reads them back; each slot ends where
#    the next part starts (concatenations) or at the end of the clip (the midpoint layout);
# 3: as 2, and every part's slot length is recorded (`slot_lengths`: timing other than the
#    midpoint, issue 25). Midpoint recipes stay version 2, so their rows and bytes do not change;
#    a teminal that renders only version 2 refuses a timed recipe instead of misplacing a gap.
RECIPE_VERSION = 2
TIMED_RECIPE_VERSION = 3
# Timing settings at their defaults (the paper's midpoint, no gap, overlays start together).
TIMING_DEFAULTS = {"junction": (0.5, 0.5), "gap": (0.0, 0.0), "overlay_start": (0.0, 0.0)}
MIN_EVENT_SECONDS = 0.5    # each event of a timed composite keeps at least this ...
MIN_EVENT_FRACTION = 0.1   # ... or this fraction of the clip, whichever is shorter


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
    # Timing, LOW,HIGH drawn per group (a number is LOW = HIGH); see the module docstring.
    junction: tuple[float, float] = TIMING_DEFAULTS["junction"]   # fraction: 2nd event starts
    gap: tuple[float, float] = TIMING_DEFAULTS["gap"]             # seconds of silence before it
    overlay_start: tuple[float, float] = TIMING_DEFAULTS["overlay_start"]  # fraction: overlay's b

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
        for name, value in check_timing(self.junction, self.gap, self.overlay_start,
                                        self.clip_seconds).items():
            object.__setattr__(self, name, value)

    @property
    def num_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def timed(self) -> bool:
        """Whether any timing setting differs from the paper's midpoint layout."""
        return any(getattr(self, k) != v for k, v in TIMING_DEFAULTS.items())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["snr_range"] = list(self.snr_range)
        for name, default in TIMING_DEFAULTS.items():
            # only when set, so that a default build's id and builds-table config stay as
            # they were before timing existed
            if getattr(self, name) == default:
                del d[name]
            else:
                d[name] = list(getattr(self, name))
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ComposeConfig":
        d = {k: d[k] for k in (f.name for f in dataclasses.fields(cls)) if k in d}
        for name in ("snr_range", *TIMING_DEFAULTS):
            if name in d:
                d[name] = tuple(float(v) for v in d[name])
        return cls(**d)


_TIMING_FORMS = {  # option, accepted values, example
    "junction": ("--junction", "fractions of the clip in (0, 1)", "0.5 or 0.3,0.7"),
    "gap": ("--gap", "seconds >= 0", "0 or 0,1.5"),
    "overlay_start": ("--overlay-start", "fractions of the clip in [0, 1)", "0 or 0,0.5"),
}


def min_event_seconds(clip_seconds: float) -> float:
    """The least time each event of a timed composite keeps: 0.5 s, or 0.1 of the clip when
    that is shorter (a 1 s clip keeps 0.1 s per event, as short as a source may be)."""
    return min(MIN_EVENT_SECONDS, MIN_EVENT_FRACTION * clip_seconds)


def check_timing(junction, gap, overlay_start, clip_seconds: float) -> dict:
    """The three timing settings as (LOW, HIGH) float pairs (a number x is (x, x)), or a
    ValueError naming the option: values out of range, NaN or inf, LOW above HIGH, or a range
    that could leave an event less than `min_event_seconds`."""
    ranges = {name: _timing_range(name, value) for name, value in
              (("junction", junction), ("gap", gap), ("overlay_start", overlay_start))}
    (j_lo, j_hi), (_, g_hi), (_, s_hi) = ranges.values()
    least, eps = min_event_seconds(clip_seconds), 1e-9
    first, second = j_lo * clip_seconds - g_hi, (1 - j_hi) * clip_seconds
    if min(first, second) < least - eps:
        where = (f"the first event {max(first, 0):g} s (a junction at {j_lo:g} less a gap of "
                 f"{g_hi:g} s)" if first < least - eps else
                 f"the second event {second:g} s (after a junction at {j_hi:g})")
        raise ValueError(f"--junction {timing_text(ranges['junction'])} with --gap "
                         f"{timing_text(ranges['gap'])} leaves {where} of a {clip_seconds:g} s clip; "
                         f"each event keeps at least {least:g} s: move the junction towards 0.5 "
                         f"or shorten the gap")
    if (1 - s_hi) * clip_seconds < least - eps:
        raise ValueError(f"--overlay-start {timing_text(ranges['overlay_start'])} leaves the late "
                         f"sound {(1 - s_hi) * clip_seconds:g} s of a {clip_seconds:g} s clip; it "
                         f"keeps at least {least:g} s: lower the overlay start")
    return ranges


def _timing_range(name: str, value) -> tuple[float, float]:
    option, accepted, example = _TIMING_FORMS[name]
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 and math.isfinite(v) for v in pair):
        raise ValueError(f"{option} {timing_text(value)}: give X or LOW,HIGH, finite {accepted}, "
                         f"for example {example}")
    lo, hi = float(pair[0]), float(pair[1])
    ok = {"junction": lambda v: 0 < v < 1, "gap": lambda v: v >= 0,
          "overlay_start": lambda v: 0 <= v < 1}[name]
    if not (ok(lo) and ok(hi)):
        raise ValueError(f"{option} {timing_text(pair)}: give {accepted}, for example {example}")
    if lo > hi:
        raise ValueError(f"{option} {timing_text(pair)}: the low end is above the high end "
                         f"({option} is X or LOW,HIGH)")
    return lo, hi


def timing_text(value) -> str:
    """A timing value as the options take it: X, or LOW,HIGH (`pipeline build`'s defaults are
    written this way too)."""
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and timing_text(value[0]) == timing_text(value[1]):
            return timing_text(value[0])
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else repr(value)


@dataclass(frozen=True)
class Timing:
    """One group's timing in samples of its composite (see the module docstring)."""
    junction: int        # where the second event of double / forward starts
    gap: int = 0         # silence before it (taken from the first slot)
    overlay_start: int = 0   # where an overlay's second sound starts


def draw_timing(config: ComposeConfig, group_seed: int) -> Timing | None:
    """The timing of one group, or None for the paper's midpoint layout (the defaults).

    Each quantity is drawn uniformly from its range with its own generator, derived from the
    group seed and its name: the draws that groups made before timing existed (SNR, captions,
    augmentation) are untouched, and narrowing one range does not move the other draws."""
    if not config.timed:
        return None
    n, sr = config.num_samples, config.sample_rate

    def draw(name: str) -> float:
        lo, hi = getattr(config, name)
        if hi <= lo:
            return lo
        return float(np.random.default_rng(derive_seed(group_seed, "timing", name)).uniform(lo, hi))

    return Timing(junction=math.floor(draw("junction") * n), gap=int(round(draw("gap") * sr)),
                  overlay_start=math.floor(draw("overlay_start") * n))


def plan_layout(relation: str, timing: Timing | None, num_samples: int,
                sample_rate: int) -> tuple[list[float], list[float] | None]:
    """(offsets, slot_lengths) in seconds of one member: where each part starts and how long
    its slot is. `timing` None is the midpoint layout, whose slots follow from the offsets
    (slot_lengths None: a version-2 recipe)."""
    n, sr = num_samples, sample_rate
    if timing is None:
        second = {"single": None, "overlay": 0}.get(relation, n // 2)
        return ([0.0] if second is None else [0.0, second / sr]), None
    j, g, s = timing.junction, timing.gap, timing.overlay_start
    starts, lengths = {
        "single": ([0], [n]),
        "double": ([0, j], [j - g, n - j]),
        "forward": ([0, j], [j - g, n - j]),
        "reversed": ([0, n - j + g], [n - j, j - g]),
        "overlay": ([0, s], [n, n - s]),
    }[relation]
    if min(lengths) < 1 or starts[-1] >= n:
        raise ValueError(f"{relation}: timing {timing} leaves a part no room in {n} samples")
    return [k / sr for k in starts], [k / sr for k in lengths]


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
    # each part's slot length (s, planned; version 3). None: the midpoint layout (version 2),
    # and the key is left out of to_dict, so such rows are what they were before it existed.
    slot_lengths: list[float] | None = None

    def to_dict(self) -> dict:
        # fields are flat values and lists of them: a shallow copy (asdict's deep copy is slow)
        return {f: (list(v) if isinstance(v, list) else v)
                for f in _RECIPE_FIELDS for v in (getattr(self, f),)
                if not (v is None and f in _OPTIONAL_FIELDS)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "SampleRecipe":
        d = {k: d[k] for k in (f.name for f in dataclasses.fields(cls)) if k in d}
        for name in ("source_ids", "labels", "captions", "template_ids", "offsets", "gains_db",
                     "source_offsets"):
            if name in d:
                d[name] = list(d[name]) if d[name] is not None else []
        if d.get("slot_lengths") is not None:
            d["slot_lengths"] = [float(v) for v in d["slot_lengths"]]
        d.setdefault("recipe_version", 1)   # rows written before the column existed
        return cls(**d)


_RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(SampleRecipe))
# Columns that only timed builds write (manifests.schema.OPTIONAL_COLUMNS).
_OPTIONAL_FIELDS = frozenset({"slot_lengths"})


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
    # A captioned clip (no label) appears in captions as one of its captions, drawn per group
    # (after the SNR, so labelled groups draw exactly what they drew before captions existed).
    template_set = resolve_template_set(config.template_set, is_captioned(a))
    text_a, text_b = (caption_for_slot(c, rng) if is_captioned(c) else caption_text(c)
                      for c in (a, b))
    timing = draw_timing(config, gseed)
    recipes = []
    for relation in STAGE_RELATIONS[stage]:
        parts = {"single": [a], "reversed": [b, a]}.get(relation, [a, b])
        offsets, slot_lengths = plan_layout(relation, timing, n, config.sample_rate)
        caption, captions, template_ids = render_captions(
            relation, text_a, None if relation == "single" else text_b, template_set)
        recipes.append(SampleRecipe(
            key=sample_key(gkey, relation), group_key=gkey, stage=stage, split=split,
            relation=relation, source_ids=[p.source_id for p in parts],
            labels=[p.label for p in parts], caption=caption, captions=list(captions),
            template_ids=list(template_ids), offsets=offsets,
            snr_db=snr if relation == "overlay" else None, seed=gseed,
            sample_rate=config.sample_rate, num_samples=n, dataset=a.dataset, pad=config.pad,
            target_db=float(config.target_db), ceiling=float(config.ceiling),
            slot_lengths=slot_lengths,
            recipe_version=RECIPE_VERSION if slot_lengths is None else TIMED_RECIPE_VERSION))
    cuts: dict = {}
    for recipe in recipes:
        plan_parts(recipe, waves, config.augment, cuts)
    return recipes


def retime(recipe: SampleRecipe, junction: float, waves: Mapping[str, np.ndarray]) -> SampleRecipe:
    """`recipe` re-planned with its group's second event at `junction` (a fraction of the
    clip), from the recipe and its sources alone: the recipe a build with that fixed
    `--junction` and this recipe's gap would plan (new offsets, slot lengths and cuts; the
    same augmentation parameters, which depend on the seed and source only). `junction` is
    the group's junction, that of double / forward; a reversed member gets the mirrored one.
    At 0.5 with no gap this is the midpoint recipe of a default build (version 2). Singles and
    overlays have no junction and come back unchanged (a copy). The stored member's sha256 and
    the measured gains no longer apply and are cleared; `render` gives the new audio."""
    out = SampleRecipe.from_dict(recipe.to_dict())
    if recipe.relation not in CONCATENATIONS:
        return out
    n, sr = recipe.num_samples, recipe.sample_rate
    (first, second) = part_slots(recipe)
    gap = second[0] - first[1]   # silence between the end of the first slot and the second
    check_timing(junction, gap / sr, 0.0, n / sr)
    timing = None if (junction, gap) == (0.5, 0) else Timing(math.floor(junction * n), gap)
    out.offsets, out.slot_lengths = plan_layout(recipe.relation, timing, n, sr)
    out.recipe_version = RECIPE_VERSION if timing is None else TIMED_RECIPE_VERSION
    out.sha256, out.gains_db = "", []
    spec = json.loads(recipe.augment or "{}").get("spec")
    return plan_parts(out, waves, spec)


def part_slots(recipe: SampleRecipe) -> list[tuple[int, int]]:
    """(start, end) sample of each part's slot, in temporal order: where each event of the
    rendered member lies (its content may end earlier when a short part is zero-padded)."""
    return list(zip(*_slots(recipe)))


def _slots(recipe: SampleRecipe) -> tuple[list[int], list[int]]:
    """(start, end) sample of each part's slot: as recorded in `slot_lengths` (version 3), else
    up to the next part's start for concatenations and the whole length otherwise."""
    n, sr = recipe.num_samples, recipe.sample_rate
    starts = [int(round(o * sr)) for o in recipe.offsets]
    if recipe.slot_lengths is not None:
        return starts, [s + int(round(length * sr)) for s, length in zip(starts, recipe.slot_lengths)]
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
    if recipe.recipe_version not in (RECIPE_VERSION, TIMED_RECIPE_VERSION):
        raise ValueError(
            f"recipe {recipe.key} is version {recipe.recipe_version}; this teminal renders "
            f"versions {RECIPE_VERSION} and {TIMED_RECIPE_VERSION} (cuts and augmentation "
            f"chosen when planned): rebuild it")
    timed = recipe.recipe_version == TIMED_RECIPE_VERSION
    if timed != (recipe.slot_lengths is not None) or \
            (timed and len(recipe.slot_lengths) != len(recipe.source_ids)):
        raise ValueError(f"render {recipe.key}: a version-{recipe.recipe_version} recipe with "
                         f"slot_lengths {recipe.slot_lengths} for {len(recipe.source_ids)} parts; "
                         f"version {TIMED_RECIPE_VERSION} records one slot length per part, "
                         f"version {RECIPE_VERSION} none: plan it again "
                         "(compose.make_group_recipes or retime)")
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
    out, limit_db = peak_limit(out, recipe.ceiling, (hi, lo) if known else None, in_place=True)
    gains = [round(g + float(limit_db), 6) for g in gains]
    return Rendering(np.ascontiguousarray(out, dtype=np.float32), gains)


def _add_padded(out: np.ndarray, start: int, length: int, x: np.ndarray, policy: str) -> None:
    """out[start:start+length] += x padded to `length` by `policy` (audio.padding_spans: "repeat"
    tiles x, "zero" places it once), without building the padded copy."""
    if policy not in PAD_POLICIES:
        raise ValueError(f"pad policy {policy!r} is not one of {PAD_POLICIES}")
    if len(x) == 0:
        return
    for pos, k in padding_spans(len(x), length, policy):
        out[start + pos:start + pos + k] += x[:k]


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
