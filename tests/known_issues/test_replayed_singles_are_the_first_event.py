"""Stage B's --retain-singles replays the first sound of each forward clip as a single clip.
It took the first half of the clip, which holds part of the second event once the junction
moves (pipeline build --junction): the replay must take the first part's planned slot."""
from __future__ import annotations

import numpy as np
import pytest

from teminal.pipeline.compose import ComposeConfig, draw_timing, plan_layout
from teminal.train.streaming import replay_single

SR, N = 1000, 10000   # a 10 s clip at 1 kHz


def _row(junction: float, gap: float = 0.0) -> dict:
    cfg = ComposeConfig(sample_rate=SR, clip_seconds=N / SR, junction=junction, gap=gap)
    offsets, lengths = plan_layout("forward", draw_timing(cfg, 0), N, SR)
    return {"key": "g.forward", "group_key": "g", "stage": "b", "split": "train",
            "relation": "forward", "labels": ["dog", "rain"], "caption": "dog before rain",
            "offsets": offsets, "slot_lengths": lengths, "sample_rate": SR, "num_samples": N,
            "recipe_version": 3 if lengths else 2}


@pytest.mark.parametrize("junction,gap", [(0.5, 0.0), (0.2, 0.0), (0.3, 0.5), (0.8, 1.0)])
def test_the_replayed_single_holds_only_the_first_event(junction, gap):
    row = _row(junction, gap)
    second = int(round(row["offsets"][1] * SR))
    clip = np.where(np.arange(N) < second, 1.0, -1.0).astype(np.float32)  # a = +1, b = -1
    clip[second - int(round(gap * SR)):second] = 0.0                      # the gap is silence
    wave, text = replay_single(clip, row)
    assert len(wave) == N and text == "This is a sound of dog."
    assert (wave >= 0).all(), f"the replay of a junction at {junction} holds the second event"
    assert (wave == 1.0).mean() > 0.9 or gap > 0
