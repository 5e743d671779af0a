"""Issue 8: the small base confused rising and falling chirps at chance. The two classes share
band and envelope, so only a sweep's direction tells them apart, and at 0.3-0.7 s a sweep
covered 2-4 frames of the small model's 160 ms hop: too few to learn a direction from (every
error of a 0.87 base). Each sweep now lasts 1.2-2 s, 8-12 frames."""
from __future__ import annotations

import json

import numpy as np

from teminal.models.specs import CONFIG_DIR
from teminal.pipeline.sources import synth

SR = 16000


def _event_durations(x: np.ndarray) -> list[float]:
    """Seconds of each run of 10 ms frames within 20 dB of the clip's loudest frame."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = 10 * np.log10((frames ** 2).mean(1) + 1e-12)
    loud = np.concatenate([[False], level > level.max() - 20, [False]])
    edges = np.flatnonzero(np.diff(loud.astype(int)))
    return [(end - start) * 0.01 for start, end in zip(edges[::2], edges[1::2])]


def test_every_chirp_spans_at_least_six_hops_of_the_small_model():
    cfg = json.loads((CONFIG_DIR / "small-cnn6.json").read_text())["clap"]["audio_cfg"]
    hop_s = cfg["hop_size"] / cfg["sample_rate"]
    for seed in range(20):
        for name in ("rising_chirp", "falling_chirp"):
            x = synth.CLASSES[name](np.random.default_rng(seed), 1.0, int(5 * SR), SR)
            durations = _event_durations(x)
            assert len(durations) == 2, (name, seed, durations)
            assert min(durations) >= 6 * hop_s, (name, seed, durations, hop_s)
