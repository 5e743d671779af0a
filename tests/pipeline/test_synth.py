from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from teminal.pipeline.audio import load_source
from teminal.pipeline.sources import esc50, synth

HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def folder_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def read_rows(root: Path) -> list[dict]:
    with open(root / "meta" / "esc50.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == HEADER
        return list(reader)


def test_exact_esc50_layout(synthetic_esc50):
    rows = read_rows(synthetic_esc50)
    n_classes = len(synth.CLASS_NAMES)
    assert n_classes >= 10
    assert len(rows) == n_classes * 5 * 2
    assert Counter(r["fold"] for r in rows) == {str(f): n_classes * 2 for f in range(1, 6)}
    assert sorted((synthetic_esc50 / "audio").iterdir()) == sorted(
        synthetic_esc50 / "audio" / r["filename"] for r in rows)
    for r in rows:
        fold, src, take, target = re.fullmatch(r"(\d)-(\d+)-([A-Z])-(\d+)\.wav", r["filename"]).groups()
        assert (fold, src, take, target) == (r["fold"], r["src_file"], r["take"], r["target"])
        assert synth.CLASS_NAMES[int(target)] == r["category"] and r["esc10"] == "False"
        info = sf.info(synthetic_esc50 / "audio" / r["filename"])
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 1, 220500, "PCM_16")
    marker = (synthetic_esc50 / "SYNTHETIC.md").read_text()
    assert "NOT ESC-50" in marker and "procedurally" in marker


def test_class_names_look_like_esc50_categories():
    assert len(synth.CLASS_NAMES) >= 10
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", c) for c in synth.CLASS_NAMES)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(clips_per_class_per_fold=1, classes=["siren", "drum_hits"])
    a = synth.write_synthetic_esc50(tmp_path / "a", seed=3, **kw)
    b = synth.write_synthetic_esc50(tmp_path / "b", seed=3, **kw)
    c = synth.write_synthetic_esc50(tmp_path / "c", seed=4, **kw)
    assert folder_digest(a) == folder_digest(b) != folder_digest(c)


def test_a_clip_does_not_depend_on_the_other_classes(tmp_path, synthetic_esc50):
    sub = synth.write_synthetic_esc50(tmp_path / "sub", seed=0, clips_per_class_per_fold=1,
                                      classes=["wind_swell", "click_train"])
    for name in (p.name for p in (sub / "audio").iterdir()):
        assert (sub / "audio" / name).read_bytes() == (synthetic_esc50 / "audio" / name).read_bytes()


def test_replace_swaps_stale_clips_for_the_new_set(tmp_path):
    out = synth.write_synthetic_esc50(tmp_path, clips_per_class_per_fold=2, classes=["siren", "low_hum"])
    synth.write_synthetic_esc50(tmp_path, clips_per_class_per_fold=1, classes=["siren", "low_hum"],
                                replace=True)
    assert len(list((out / "audio").iterdir())) == len(read_rows(out)) == 10


def test_refuses_to_overwrite_real_data(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text(",".join(HEADER) + "\n")
    with pytest.raises(FileExistsError, match="without a SYNTHETIC.md marker.*Nothing was changed"):
        synth.write_synthetic_esc50(tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="classes must be"):
        synth.write_synthetic_esc50("/nonexistent", classes=["siren", "kazoo"])
    with pytest.raises(ValueError, match="no synthetic dataset"):
        synth.write_synthetic("audiocaps", "/nonexistent")


def test_every_clip_decodes_and_is_not_silent(synthetic_esc50):
    scan = esc50.scan(synthetic_esc50)
    assert scan.synthetic and scan.rejects == []
    for clip in scan.clips:
        x = load_source(clip.path, 44100)  # raises AudioError for silent/undecodable
        assert len(x) == 220500 and np.max(np.abs(x)) < 1.0


def test_clips_of_a_class_vary(synthetic_esc50):
    """Each clip draws its own pitch, timing and level: no two clips share a waveform."""
    rows = read_rows(synthetic_esc50)
    for category in synth.CLASS_NAMES:
        names = [r["filename"] for r in rows if r["category"] == category][:3]
        waves = [sf.read(synthetic_esc50 / "audio" / n)[0] for n in names]
        for i in range(len(waves)):
            for j in range(i + 1, len(waves)):
                corr = np.corrcoef(waves[i], waves[j])[0, 1]
                assert abs(corr) < 0.9, (category, names[i], names[j], corr)


def _features(x: np.ndarray, sr: int = 44100) -> tuple[np.ndarray, np.ndarray]:
    """(log band spectrum, energy-envelope statistics) of a clip, both level-independent."""
    frames = x[: len(x) // 1024 * 1024].reshape(-1, 1024)
    power = np.abs(np.fft.rfft(frames * np.hanning(1024), axis=1)) ** 2
    freqs = np.fft.rfftfreq(1024, 1 / sr)
    edges = np.geomspace(30, 16000, 25)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1)
                      for lo, hi in zip(edges[:-1], edges[1:])], 1)
    spectrum = np.log10(bands.mean(0) + 1e-12)
    env = np.log10(power.sum(1) + 1e-12)
    spectrum, env = spectrum - spectrum.max(), env - env.max()
    envelope = np.array([env.std(), np.mean(env > -1), np.mean(env > -3),
                         np.abs(np.diff(env)).mean(), np.percentile(env, 10), np.median(env)])
    return spectrum, envelope


def _nearest_centroid_accuracy(train, test) -> float:
    x = np.array([v for _, v in train])
    mu, sd = x.mean(0), x.std(0) + 1e-9
    labels = sorted({c for c, _ in train})
    cent = np.array([np.mean([(v - mu) / sd for c, v in train if c == k], 0) for k in labels])
    hits = [labels[int(np.argmin((((v - mu) / sd - cent) ** 2).sum(1)))] == c for c, v in test]
    return float(np.mean(hits))


def test_classes_differ_in_spectrum_and_in_envelope(synthetic_esc50):
    """Held-out folds are recognisable from the average spectrum alone and from the temporal
    envelope alone (chance is 1/12), so a model has real differences to learn."""
    feats = {}
    for r in read_rows(synthetic_esc50):
        x, _ = sf.read(synthetic_esc50 / "audio" / r["filename"])
        feats[(r["category"], int(r["fold"]), r["filename"])] = _features(x)
    split = lambda which, folds: [(c, f[which] if which < 2 else np.concatenate(f))
                                  for (c, fold, _), f in feats.items() if fold in folds]
    chance = 1 / len(synth.CLASS_NAMES)
    for which, floor in ((0, 0.6), (1, 0.5), (2, 0.8)):
        acc = _nearest_centroid_accuracy(split(which, {1, 2, 3}), split(which, {4, 5}))
        assert acc >= floor and acc > 5 * chance, (which, acc)
