"""Issue 9.10: a one-sample clip was accepted (and became "an impulse before thunderstorm");
a pure DC offset passed the peak-based silence check. Sources shorter than
MIN_SOURCE_SECONDS (0.1 s) are rejected as too short, and silence is judged with the DC offset
removed."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from teminal.pipeline.audio import MIN_SOURCE_SECONDS, load_source
from teminal.pipeline.sources.base import AudioError

SR = 16000


def write(tmp_path, x, sr=SR, subtype="PCM_16", name="x.wav"):
    path = tmp_path / name
    sf.write(path, np.asarray(x, dtype=np.float32), sr, subtype=subtype)
    return path


@pytest.mark.parametrize("frames,sr", [(1, SR), (2, 44100), (100, 8000), (1599, SR),
                                       (int(0.099 * 48000), 48000)])
def test_a_source_shorter_than_the_minimum_is_rejected_as_too_short(tmp_path, frames, sr):
    rng = np.random.default_rng(0)
    path = write(tmp_path, rng.uniform(-0.5, 0.5, frames), sr)
    with pytest.raises(AudioError, match=r"too short \(.* s < 0.1 s\)"):
        load_source(path, SR)


def test_a_source_at_the_minimum_is_kept(tmp_path):
    rng = np.random.default_rng(0)
    path = write(tmp_path, rng.uniform(-0.5, 0.5, int(MIN_SOURCE_SECONDS * SR)))
    assert len(load_source(path, SR)) == int(MIN_SOURCE_SECONDS * SR)


@pytest.mark.parametrize("offset", [0.5, -0.9, 0.01, 0.99])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_a_pure_dc_offset_is_silent(tmp_path, offset, subtype):
    path = write(tmp_path, np.full(SR, offset), subtype=subtype)
    with pytest.raises(AudioError, match="silent"):
        load_source(path, SR)


def test_dc_plus_inaudible_noise_is_silent_and_the_offset_is_named(tmp_path):
    rng = np.random.default_rng(1)
    path = write(tmp_path, 0.3 + 1e-4 * rng.standard_normal(SR), subtype="FLOAT")
    with pytest.raises(AudioError, match=r"silent \(peak .* DC offset \+0.3 removed\)"):
        load_source(path, SR)


def test_a_stereo_file_with_dc_on_both_channels_is_silent(tmp_path):
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([np.full(SR, 0.4), np.full(SR, -0.2)], 1).astype(np.float32), SR)
    with pytest.raises(AudioError, match="silent"):
        load_source(path, SR)


def test_a_real_sound_riding_on_a_dc_offset_is_kept(tmp_path):
    t = np.arange(SR) / SR
    path = write(tmp_path, 0.4 + 0.1 * np.sin(2 * np.pi * 440 * t))
    x = load_source(path, SR)
    assert len(x) == SR and np.ptp(x) > 0.15
