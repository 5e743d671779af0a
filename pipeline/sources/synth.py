"""A synthetic stand-in for ESC-50, in ESC-50's exact layout, so every command runs with no dataset.

The sounds are procedural (numpy only): each class differs from every other in spectrum AND in
temporal envelope, and every clip draws its own pitch, timing, level and background noise from
the seed, so a model has to learn the class rather than memorise a waveform. The folder carries
a `SYNTHETIC.md` marker; the ESC-50 reader then reports `dataset="esc50-synthetic"` and downstream
records carry the flag, so it can never pass for real data.

Determinism: clip (seed, class, fold, index) is drawn from its own numpy SeedSequence, so a
clip does not change when other classes or counts change, and the same call writes the same
bytes (on the same numpy build; libm/SIMD differences across machines can move a last bit).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from teminal.manifests.digests import file_sha256
from teminal.pipeline.audio import write_wav
from teminal.pipeline.paths import UnsafePath, relative_parts, write_text_nofollow
from teminal.pipeline.sources.esc50 import CSV_PATH, OFFICIAL_HEADER, SYNTHETIC_MARKER

SAMPLE_RATE = 44100
DURATION_S = 5.0
FOLDS = (1, 2, 3, 4, 5)
TAKE = "A"

SoundGenerator = Callable[[np.random.Generator, float, int, int], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Building blocks. Each returns float64; `p` is the clip's pitch factor (about +-3 semitones).

def _fade(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    env = np.ones(n)
    a, r = min(n, max(1, int(attack_s * sr))), min(n, max(1, int(release_s * sr)))
    env[:a] *= np.linspace(0.0, 1.0, a)
    env[n - r:] *= np.linspace(1.0, 0.0, r)
    return env


def _add(out: np.ndarray, event: np.ndarray, start: int) -> None:
    start = max(0, start)
    end = min(len(out), start + len(event))
    if end > start:
        out[start:end] += event[:end - start]


def _onsets(rng: np.random.Generator, n: int, sr: int, count: int, event_s: float,
            gap_s: float = 0.05) -> list[int]:
    """`count` non-overlapping event starts spread over the clip, with random gaps."""
    event, gap = int(event_s * sr), int(gap_s * sr)
    free = n - count * (event + gap)
    if free <= 0:
        return [int(i * n / count) for i in range(count)]
    cuts = np.sort(rng.uniform(0, free, size=count))
    return [int(c) + i * (event + gap) for i, c in enumerate(cuts)]


def _sweep(sr, f0, f1, dur_s) -> np.ndarray:
    m = int(dur_s * sr)
    t = np.arange(m) / sr
    k = np.log(f1 / f0) / dur_s
    phase = 2 * np.pi * f0 * (np.exp(k * t) - 1) / k
    tone = np.sin(phase) + 0.25 * np.sin(2 * phase)
    return tone * _fade(m, sr, 0.01, 0.04)


def _chirps(rng, p, n, sr, rising: bool) -> np.ndarray:
    # Rising and falling chirps used to share their band and envelope, so only the sweep's
    # direction told them apart: a cue laion's mean + max pooling sees only through the conv
    # stack's local view. At 0.3-0.7 s sweeps (2-4 frames of the small model's 160 ms hop) its
    # base was at chance on them; at 1.2-2 s one seed of three still was, on two machines
    # (BENCHMARKS.md, "A base that knows its sounds"). The module's rule is that every class
    # differs in spectrum too, so each direction now has its own band (rising from 0.2-0.35 kHz
    # by x3-4, falling from 2-3 kHz by x3-4): the average spectrum tells them apart.
    out = np.zeros(n)
    count = 2
    dur = rng.uniform(1.2, 2.0)
    for start in _onsets(rng, n, sr, count, dur, 0.1):
        if rising:
            f0 = rng.uniform(200, 350) * p
            f1 = f0 * rng.uniform(3.0, 4.0)
        else:
            f0 = rng.uniform(2000, 3000) * p
            f1 = f0 / rng.uniform(3.0, 4.0)
        _add(out, _sweep(sr, f0, f1, dur * rng.uniform(0.85, 1.0)), start)
    return out


def rising_chirp(rng, p, n, sr):
    """2 upward sine sweeps of 1.2-2 s in the low band (0.2-0.35 kHz up x3-4)."""
    return _chirps(rng, p, n, sr, rising=True)


def falling_chirp(rng, p, n, sr):
    """2 downward sine sweeps of 1.2-2 s in the upper band (2-3 kHz down x3-4)."""
    return _chirps(rng, p, n, sr, rising=False)


def low_hum(rng, p, n, sr):
    """Steady 50-110 Hz harmonic hum with a slow tremolo, the whole clip."""
    t = np.arange(n) / sr
    f0 = rng.uniform(50, 110) * p
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 7))
    trem = 1 + rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
    return x * trem * _fade(n, sr, 0.08, 0.08)


def high_whistle(rng, p, n, sr):
    """1-3 held whistles, a pure 2.5-5 kHz tone with vibrato."""
    out = np.zeros(n)
    count = int(rng.integers(1, 4))
    dur = rng.uniform(0.6, 1.3)
    for start in _onsets(rng, n, sr, count, dur, 0.15):
        m = int(dur * sr)
        t = np.arange(m) / sr
        f = rng.uniform(2500, 5000) * p
        inst = f * (1 + 0.015 * np.sin(2 * np.pi * rng.uniform(5, 7) * t))
        _add(out, np.sin(2 * np.pi * np.cumsum(inst) / sr) * _fade(m, sr, 0.05, 0.08), start)
    return out


def noise_bursts(rng, p, n, sr):
    """4-10 sharp broadband noise bursts of 40-150 ms at irregular times."""
    out = np.zeros(n)
    count = int(rng.integers(4, 11))
    for start in _onsets(rng, n, sr, count, 0.15, 0.05):
        m = int(rng.uniform(0.04, 0.15) * sr)
        env = np.exp(-np.arange(m) / (m / 4)) * _fade(m, sr, 0.002, 0.005)
        _add(out, rng.standard_normal(m) * env, start)
    return out


def click_train(rng, p, n, sr):
    """A 2-4 s train of 1 ms clicks at 8-25 per second."""
    out = np.zeros(n)
    rate = rng.uniform(8, 25) * p
    span = rng.uniform(2.0, 4.0)
    t0 = rng.uniform(0, DURATION_S - span)
    times = t0 + np.arange(0, span, 1 / rate)
    times = times + rng.normal(0, 0.002, size=len(times))
    m = int(0.001 * sr) + 1
    click = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 3))
    for t in times:
        _add(out, click * rng.uniform(0.7, 1.0), int(t * sr))
    return out


def square_buzz(rng, p, n, sr):
    """A 120-250 Hz square wave gated on and off 2-4 times a second."""
    t = np.arange(n) / sr
    f0 = rng.uniform(120, 250) * p
    square = np.sign(np.sin(2 * np.pi * f0 * t))
    gate_rate, duty = rng.uniform(2, 4), rng.uniform(0.4, 0.7)
    gate = ((t * gate_rate + rng.uniform()) % 1.0 < duty).astype(float)
    smooth = np.ones(int(0.005 * sr)) / int(0.005 * sr)  # 5 ms edges, no clicks
    return square * np.convolve(gate, smooth, mode="same")


def decaying_bell(rng, p, n, sr):
    """1-3 struck bells: inharmonic partials, each decaying exponentially over a second or two."""
    out = np.zeros(n)
    count = int(rng.integers(1, 4))
    ring = 1.5
    ratios, amps = np.array([1.0, 2.0, 2.76, 4.07, 5.4]), np.array([1.0, 0.6, 0.5, 0.3, 0.2])
    for start in _onsets(rng, n, sr, count, ring, 0.05):
        m = int(ring * sr)
        t = np.arange(m) / sr
        f0 = rng.uniform(300, 700) * p
        tau = rng.uniform(0.4, 0.9) / np.sqrt(ratios)
        partials = amps[:, None] * np.exp(-t[None, :] / tau[:, None]) * np.sin(
            2 * np.pi * f0 * ratios[:, None] * t[None, :])
        _add(out, partials.sum(axis=0) * _fade(m, sr, 0.002, 0.05), start)
    return out


def water_drops(rng, p, n, sr):
    """6-15 drips: 20-60 ms sine plops whose pitch glides up, at random times."""
    out = np.zeros(n)
    count = int(rng.integers(6, 16))
    for start in _onsets(rng, n, sr, count, 0.08, 0.05):
        m = int(rng.uniform(0.02, 0.06) * sr)
        t = np.arange(m) / sr
        f = rng.uniform(600, 1500) * p
        inst = f * (1 + rng.uniform(0.5, 1.5) * t / t[-1])
        env = np.exp(-t / rng.uniform(0.01, 0.02)) * _fade(m, sr, 0.001, 0.003)
        _add(out, np.sin(2 * np.pi * np.cumsum(inst) / sr) * env, start)
    return out


def siren(rng, p, n, sr):
    """A continuous siren: 700-1000 Hz carrier swept up and down by a slow 0.3-0.8 Hz LFO."""
    t = np.arange(n) / sr
    fc = rng.uniform(700, 1000) * p
    inst = fc * (1 + rng.uniform(0.2, 0.35) * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t
                                                         + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(inst) / sr
    return (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)) * _fade(n, sr, 0.1, 0.1)


def drum_hits(rng, p, n, sr):
    """Regular low drum hits (1.5-3 per second): a pitch-dropping sine thump plus a noise tick."""
    out = np.zeros(n)
    rate = rng.uniform(1.5, 3.0)
    m = int(0.4 * sr)
    t = np.arange(m) / sr
    f_hi, f_lo = rng.uniform(120, 180) * p, rng.uniform(45, 70) * p
    inst = f_lo + (f_hi - f_lo) * np.exp(-t / 0.03)
    thump = np.sin(2 * np.pi * np.cumsum(inst) / sr) * np.exp(-t / rng.uniform(0.08, 0.2))
    tick = np.zeros(m)
    k = int(0.004 * sr)
    tick[:k] = rng.standard_normal(k) * np.exp(-np.arange(k) / (k / 4)) * 0.3
    hit = (thump + tick) * _fade(m, sr, 0.001, 0.02)
    for t0 in np.arange(rng.uniform(0, 0.5), DURATION_S - 0.2, 1 / rate):
        _add(out, hit * rng.uniform(0.8, 1.0), int(t0 * sr))
    return out


def wind_swell(rng, p, n, sr):
    """Low-passed noise (cutoff 300-800 Hz) rising and falling in 1-2 slow swells."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    cutoff = rng.uniform(300, 800) * p
    noise = np.fft.irfft(spectrum / (1 + (freqs / cutoff) ** 4), n)
    t = np.arange(n) / sr
    env = np.full(n, 0.08)
    for _ in range(int(rng.integers(1, 3))):
        center, width = rng.uniform(1.0, 4.0), rng.uniform(1.5, 3.0)
        u = np.clip((t - center) / width, -0.5, 0.5)
        env += 0.5 * (1 + np.cos(2 * np.pi * u)) * (np.abs(t - center) < width / 2)
    return noise * env


CLASSES: dict[str, SoundGenerator] = {
    "rising_chirp": rising_chirp,
    "falling_chirp": falling_chirp,
    "low_hum": low_hum,
    "high_whistle": high_whistle,
    "noise_bursts": noise_bursts,
    "click_train": click_train,
    "square_buzz": square_buzz,
    "decaying_bell": decaying_bell,
    "water_drops": water_drops,
    "siren": siren,
    "drum_hits": drum_hits,
    "wind_swell": wind_swell,
}
CLASS_NAMES: tuple[str, ...] = tuple(CLASSES)


# ---------------------------------------------------------------------------------------------
# Clips and the dataset

def generate_clip(category: str, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE,
                  duration_s: float = DURATION_S) -> np.ndarray:
    """One clip of `category` as int16: the class sound at a random level (-30..-18 dBFS RMS) over
    faint background noise (-65..-50 dBFS), peak-limited below full scale."""
    if category not in CLASSES:
        raise ValueError(f"unknown synthetic class {category!r}; known: {', '.join(CLASS_NAMES)}")
    n = int(round(duration_s * sample_rate))
    pitch = 2.0 ** (rng.uniform(-3, 3) / 12)
    x = CLASSES[category](rng, pitch, n, sample_rate)
    x *= 10 ** (rng.uniform(-30, -18) / 20) / max(np.sqrt(np.mean(x ** 2)), 1e-12)
    x += rng.standard_normal(n) * 10 ** (rng.uniform(-65, -50) / 20)
    peak = np.max(np.abs(x))
    if peak > 0.9:
        x *= 0.9 / peak
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def clip_rng(seed: int, target: int, fold: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), target, fold, index]))


def clip_filename(fold: int, target: int, index: int) -> str:
    # ESC-50 names are {fold}-{freesound id}-{take}-{target}.wav; ours encode class, fold and index
    return f"{fold}-9{target:02d}{fold}{index:03d}-{TAKE}-{target}.wav"


MANIFEST = "SYNTHETIC.files.json"  # what `pipeline synth` wrote here: the only files it may remove


def write_synthetic_esc50(out_dir, seed: int = 0, clips_per_class_per_fold: int = 4,
                          classes: Sequence[str] | None = None, progress: bool = False,
                          replace: bool = False) -> Path:
    """Write the synthetic ESC-50 stand-in to `out_dir` and return that folder.

    Layout: `audio/{fold}-{src}-A-{target}.wav` (5 s, 44.1 kHz, mono, PCM_16), `meta/esc50.csv`
    with the official header, `SYNTHETIC.md` and `SYNTHETIC.files.json` (every file written,
    with its sha256, and the settings). `target` is the class's index in CLASS_NAMES, so it is
    stable whatever subset `classes` picks.

    The folder must be new, empty, or an earlier output of this function holding nothing else
    (every file listed in its manifest, unchanged): anything else is refused, and only files
    listed in the manifest are ever removed. Rewriting finished output with other settings needs
    `replace=True`; the same settings rewrite the same bytes."""
    if not 1 <= clips_per_class_per_fold <= 999:
        raise ValueError(f"clips_per_class_per_fold must be 1-999, got {clips_per_class_per_fold}")
    chosen = list(CLASS_NAMES if classes is None else classes)
    unknown = [c for c in chosen if c not in CLASSES]
    if unknown or len(set(chosen)) != len(chosen) or len(chosen) < 2:
        raise ValueError(f"classes must be 2+ distinct names from {', '.join(CLASS_NAMES)}; "
                         f"got {chosen}")
    out = Path(out_dir)
    settings = {"dataset": "esc50", "seed": int(seed),
                "clips_per_class_per_fold": int(clips_per_class_per_fold), "classes": chosen}
    jobs = [(c, fold, i) for c in chosen for fold in FOLDS for i in range(clips_per_class_per_fold)]
    planned = [f"audio/{clip_filename(f, CLASS_NAMES.index(c), i)}" for c, f, i in jobs]
    planned += [SYNTHETIC_MARKER, CSV_PATH.as_posix()]
    previous = _claim(out, settings, replace)
    # The manifest goes first and lists old and planned files, so a killed run's files stay
    # claimed; the marker next, so even a half-written folder is flagged synthetic.
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / CSV_PATH).parent.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, settings, {p: None for p in sorted(set(previous) | set(planned))},
                    complete=False)
    n_clips = len(jobs)
    write_text_nofollow(out / SYNTHETIC_MARKER,
                        _marker_text(seed, chosen, clips_per_class_per_fold, n_clips))

    rows = []
    for category, fold, index in _progress(jobs, progress):
        target = CLASS_NAMES.index(category)
        name = clip_filename(fold, target, index)
        audio = generate_clip(category, clip_rng(seed, target, fold, index))
        write_wav(out / "audio" / name, audio, SAMPLE_RATE)
        rows.append((name, fold, target, category, "False", name.split("-")[1], TAKE))
    rows.sort()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OFFICIAL_HEADER)
    writer.writerows(rows)
    write_text_nofollow(out / CSV_PATH, buf.getvalue())
    for stale in sorted(set(previous) - set(planned)):  # only files an earlier run wrote
        if (out / stale).is_file():   # (_claim checked: inside `out`, no link on the way)
            (out / stale).unlink()
    _write_manifest(out, settings, {p: file_sha256(out / p) for p in sorted(planned)}, complete=True)
    return out


def _write_manifest(out: Path, settings: dict, files: dict, complete: bool) -> None:
    import json

    tmp = out / f"{MANIFEST}.tmp"
    write_text_nofollow(tmp, json.dumps({"settings": settings, "complete": complete,
                                         "files": files}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / MANIFEST)   # replaces a link at MANIFEST, never writes through it


def _claim(out: Path, settings: dict, replace: bool) -> list[str]:
    """The files an earlier `pipeline synth` wrote in `out` (may be removed or rewritten), or an
    error when `out` holds anything else, was edited, or holds finished output made with other
    settings (unless `replace`)."""
    import json

    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a folder; choose a new or empty folder")
    present, links = _walk(out)
    if links:
        raise FileExistsError(
            f"{out} holds symbolic links ({_some(links)}); `pipeline synth` never writes "
            f"through or removes a link. Nothing was changed; remove them or choose a new or "
            f"empty folder")
    present = [p for p in present if p not in (MANIFEST, f"{MANIFEST}.tmp")]
    if not (out / MANIFEST).is_file():
        if present:
            real = " (an ESC-50 CSV without a SYNTHETIC.md marker: real data?)" \
                if CSV_PATH.as_posix() in present and SYNTHETIC_MARKER not in present else ""
            raise FileExistsError(
                f"{out} is not empty and was not written by `pipeline synth` (no {MANIFEST}): "
                f"it holds {_some(present)}{real}. Nothing was changed; choose a new or empty "
                f"folder")
        return []
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as e:
        raise FileExistsError(f"{out / MANIFEST} is unreadable ({e}); nothing was changed; "
                              f"remove the folder yourself or choose another") from None
    try:   # a listed path is removed or rewritten later: it must name a file in `out`
        for listed in files:
            relative_parts(listed, str(out / MANIFEST), "listed file")
    except UnsafePath as e:
        raise FileExistsError(f"{e}. Nothing was changed; remove the folder yourself or choose "
                              f"another") from None
    foreign = [p for p in present if p not in files]
    if foreign:
        raise FileExistsError(
            f"{out} holds files `pipeline synth` did not write: {_some(foreign)}. Nothing was "
            f"changed; move them away or choose a new or empty folder")
    edited = [p for p, sha in files.items() if sha and (out / p).is_file()
              and file_sha256(out / p) != sha]
    if edited:
        raise FileExistsError(
            f"{out}: {_some(edited)} changed since `pipeline synth` wrote them. Nothing was "
            f"changed; move them away or choose a new or empty folder")
    old = manifest.get("settings")
    if manifest.get("complete") and old != settings and not replace:
        diff = ", ".join(f"{k} {old.get(k) if isinstance(old, dict) else None!r} -> {v!r}"
                         for k, v in settings.items()
                         if not isinstance(old, dict) or old.get(k) != v)
        raise FileExistsError(
            f"{out} already holds synthetic data made with other settings ({diff}). Nothing "
            f"was changed; pass --replace to replace it (only the {len(files)} files "
            f"`pipeline synth` wrote there are removed) or choose another folder")
    return sorted(files)


def _walk(out: Path) -> tuple[list[str], list[str]]:
    """(files, symbolic links) under `out`, relative and sorted; links are not followed."""
    files, links = [], []
    for top, dirs, names in os.walk(out) if out.exists() else ():
        for name in dirs + names:
            rel = (Path(top) / name).relative_to(out).as_posix()
            if (Path(top) / name).is_symlink():
                links.append(rel)
            elif name in names:
                files.append(rel)
    return sorted(files), sorted(links)


def _some(paths: list[str], n: int = 3) -> str:
    more = f" and {len(paths) - n} more" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


def _progress(items: list, enabled: bool) -> Iterable:
    if not enabled:
        return items
    from teminal.pipeline.progress import progress_bar

    return progress_bar(len(items), "synth esc50", "clip", iterable=items)


def _marker_text(seed: int, classes: list[str], per_fold: int, n_clips: int) -> str:
    lines = [
        "# SYNTHETIC data: this is NOT ESC-50",
        "",
        "Every clip in this folder was generated procedurally by `teminal.pipeline.sources.synth`",
        "(`pipeline synth esc50 DIR`). It copies ESC-50's layout (audio/{fold}-{src}-{take}-{target}.wav,",
        "5 s, 44.1 kHz, mono, 16-bit, 5 folds, meta/esc50.csv with the official header) so that every",
        "command of the project runs on a machine with no dataset. No recording is real, and results",
        "on it say nothing about ESC-50: readers report it as dataset `esc50-synthetic` and every",
        "build, catalog and evaluation made from it carries a synthetic flag.",
        "",
        f"- seed: {seed}",
        f"- clips: {n_clips} ({per_fold} per class per fold)",
        f"- classes ({len(classes)}):",
    ]
    lines += [f"  - `{c}`: {CLASSES[c].__doc__.strip()}" for c in classes]
    lines += [
        "",
        "Each clip draws its pitch (+-3 semitones), timing, level (-30..-18 dBFS RMS) and a faint",
        "background noise from its own seed (seed, class, fold, index): the same seed writes the same bytes.",
        "",
    ]
    return "\n".join(lines)


def write_synthetic(name: str, out_dir, **options) -> Path:
    """Entry point for `pipeline synth NAME OUT_DIR`: the synthetic dataset called `name`."""
    if name not in SYNTHETIC_WRITERS:
        raise ValueError(f"no synthetic dataset {name!r}; available: "
                         f"{', '.join(SYNTHETIC_WRITERS)}")
    return SYNTHETIC_WRITERS[name](out_dir, **options)


# `pipeline synth NAME`: the synthetic stand-ins this module writes, by the dataset they mimic
SYNTHETIC_WRITERS = {"esc50": write_synthetic_esc50}
