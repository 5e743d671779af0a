"""Recipes and rendering: lengths, order of events, overlay, levels, purity."""
from __future__ import annotations

import json

import numpy as np
import pytest

from teminal.pipeline.compose import (CEILING, ComposeConfig, SampleRecipe, group_key,
                                      make_group_recipes, render, render_detailed)
from teminal.pipeline.sources.base import SourceClip

SR = 16000


def tone(freq: float, seconds: float = 5.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def clip(sid: str, label: str) -> SourceClip:
    return SourceClip(source_id=sid, dataset="esc50", path=f"/x/{sid}.wav", split="train",
                      fold=1, label=label, sample_rate=SR, duration=5.0)


A, B = clip("src-a", "low hum"), clip("src-b", "high whistle")
# a: quiet low tone, b: loud high tone, so spectrum tells which is where
WAVES = {"src-a": tone(200, level=0.05), "src-b": tone(4000, level=0.8)}
CONFIG = ComposeConfig(sample_rate=SR, clip_seconds=10.0)


def recipes(stage: str, config: ComposeConfig = CONFIG, seed: int = 0,
            waves=WAVES) -> dict[str, SampleRecipe]:
    return {r.relation: r for r in make_group_recipes(stage, "train", 7, A, B, config, seed, waves)}


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


def which(x: np.ndarray) -> str:
    low, high = band_energy(x, 50, 1000), band_energy(x, 2000, 8000)
    return "a" if low > 10 * high else "b" if high > 10 * low else "both"


def test_every_relation_renders_to_the_model_input_length():
    for stage in ("a", "b"):
        for r in recipes(stage).values():
            y = render(r, WAVES)
            assert y.dtype == np.float32 and y.shape == (10 * SR,)
            assert np.isfinite(y).all() and np.abs(y).max() <= CEILING


def test_forward_plays_a_then_b_and_reversed_swaps_the_order():
    rs = recipes("b")
    fwd, rev = render(rs["forward"], WAVES), render(rs["reversed"], WAVES)
    half = 5 * SR
    assert (which(fwd[:half]), which(fwd[half:])) == ("a", "b")
    assert (which(rev[:half]), which(rev[half:])) == ("b", "a")
    # the order is swapped; the waveforms themselves are not time-reversed
    np.testing.assert_array_equal(rev[:half], fwd[half:])
    np.testing.assert_array_equal(rev[half:], fwd[:half])
    assert rs["forward"].source_ids == ["src-a", "src-b"] and rs["reversed"].source_ids == ["src-b", "src-a"]
    assert rs["forward"].caption == "low hum before high whistle"
    assert rs["reversed"].caption == "high whistle before low hum"
    assert rs["forward"].offsets == [0.0, 5.0]


def test_parts_are_loudness_normalised_before_mixing():
    y = render(recipes("b")["forward"], WAVES)
    rms = [np.sqrt(np.mean(y[:5 * SR] ** 2)), np.sqrt(np.mean(y[5 * SR:] ** 2))]
    # a was 24 dB quieter than b at the source; both now sit at the same level (-20 dBFS)
    assert 20 * np.log10(rms[0]) == pytest.approx(-20, abs=0.1)
    assert 20 * np.log10(rms[1]) == pytest.approx(-20, abs=0.1)


def test_overlay_holds_both_events_at_the_recipe_snr():
    r = recipes("b")["overlay"]
    lo, hi = CONFIG.snr_range
    assert r.snr_db is not None and lo <= r.snr_db <= hi
    y = render(r, WAVES)
    assert which(y) == "both"
    snr = 10 * np.log10(band_energy(y, 50, 1000) / band_energy(y, 2000, 8000))
    assert snr == pytest.approx(r.snr_db, abs=0.2)
    assert r.offsets == [0.0, 0.0] and r.caption == "low hum while high whistle"


def test_stage_a_single_and_double():
    rs = recipes("a")
    assert set(rs) == {"single", "double"}
    single = render(rs["single"], WAVES)
    assert which(single) == "a"
    # a 5 s clip in a 10 s single is repeat-padded (LAION-CLAP's repeat)
    np.testing.assert_array_equal(single[:5 * SR], single[5 * SR:])
    double = render(rs["double"], WAVES)
    assert (which(double[:5 * SR]), which(double[5 * SR:])) == ("a", "b")
    assert rs["single"].caption == "Single sound of low hum"


def test_zero_padding_policy_for_singles():
    r = recipes("a", ComposeConfig(sample_rate=SR, clip_seconds=10.0, pad="zero"))["single"]
    y = render(r, WAVES)
    assert np.abs(y[:5 * SR]).max() > 0 and not y[5 * SR:].any()


def test_short_parts_are_zero_padded_in_their_concatenation_slot():
    short = {"src-a": tone(200, seconds=2.0), "src-b": tone(4000, seconds=2.0)}
    y = render(recipes("b", waves=short)["forward"], short)
    assert np.abs(y[:2 * SR]).max() > 0 and not y[2 * SR:5 * SR].any()
    assert np.abs(y[5 * SR:7 * SR]).max() > 0 and not y[7 * SR:].any()


def test_long_parts_are_cut_to_their_highest_energy_window():
    long_a = np.zeros(30 * SR, dtype=np.float32)
    long_a[20 * SR:21 * SR] = tone(200, seconds=1.0, level=0.5)      # the event, at 20 s
    long_a += np.float32(1e-3) * tone(50, seconds=30.0, level=1.0)   # faint background
    waves = {"src-a": long_a, "src-b": WAVES["src-b"]}
    r = recipes("b", waves=waves)["forward"]
    assert 16.0 <= r.source_offsets[0] <= 20.0             # planned: the 5 s window holds the event
    assert r.source_offsets[1] == 0.0
    out = render_detailed(r, waves)
    assert which(out.audio[:5 * SR]) == "a"


def test_render_reads_the_cut_from_the_recipe_and_never_chooses_one():
    long_a = np.zeros(30 * SR, dtype=np.float32)
    long_a[20 * SR:21 * SR] = tone(200, seconds=1.0, level=0.5)      # the event, at 20 s
    long_a[2 * SR:3 * SR] = tone(200, seconds=1.0, level=0.1)        # a quieter one, at 2 s
    waves = {"src-a": long_a, "src-b": WAVES["src-b"]}
    r = recipes("b", waves=waves)["forward"]
    planned = render(r, waves)
    moved = SampleRecipe.from_dict({**r.to_dict(), "source_offsets": [0.0, 0.0]})
    other = render(moved, waves)
    assert not np.array_equal(planned, other)
    np.testing.assert_array_equal(other[:5 * SR], render(moved, waves)[:5 * SR])
    assert np.abs(other[2 * SR:3 * SR]).max() > 0 and not other[:SR].any()   # the 0-5 s window
    unplanned = SampleRecipe.from_dict({**r.to_dict(), "source_offsets": []})
    with pytest.raises(ValueError, match="plan the recipe first"):
        render(unplanned, waves)


def test_nothing_clips_and_silent_parts_are_guarded():
    spiky = np.zeros(5 * SR, dtype=np.float32)
    spiky[::SR] = 1.0                                       # huge crest factor: the limiter works
    silent = np.zeros(5 * SR, dtype=np.float32)
    r = recipes("b", waves={"src-a": spiky, "src-b": silent})["overlay"]
    out = render_detailed(r, {"src-a": spiky, "src-b": silent})
    assert np.isfinite(out.audio).all() and np.abs(out.audio).max() <= CEILING
    assert out.gains_db[0] < 60 and all(np.isfinite(out.gains_db))


def test_rendering_is_pure_and_the_part_cache_changes_nothing():
    rs = recipes("b")
    cache: dict = {}
    for r in rs.values():
        cached = render_detailed(r, WAVES, cache).audio
        np.testing.assert_array_equal(cached, render(r, WAVES))
        assert cached.tobytes() == render(SampleRecipe.from_dict(r.to_dict()), WAVES).tobytes()


def test_recipes_are_deterministic_from_seed_and_group_key():
    first, again = recipes("b", seed=5), recipes("b", seed=5)
    assert {k: v.to_dict() for k, v in first.items()} == {k: v.to_dict() for k, v in again.items()}
    other = recipes("b", seed=6)["overlay"]
    assert other.seed != first["overlay"].seed
    assert first["forward"].group_key == group_key("esc50", "b", "train", 7) == "esc50-b-train-000007"
    assert first["forward"].key == "esc50-b-train-000007.forward"
    # every member of a group shares the group seed (so augmented parts are shared too)
    assert len({r.seed for r in first.values()}) == 1


def test_recipe_round_trips_through_a_dict():
    r = recipes("b")["overlay"]
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert SampleRecipe.from_dict(d) == r
    assert SampleRecipe.from_dict({**d, "unknown_column": 1}) == r


def test_extended_templates_carry_all_renderings_with_ids():
    r = recipes("b", ComposeConfig(sample_rate=SR, template_set="extended"))["forward"]
    assert r.caption == "low hum before high whistle"
    assert len(r.captions) == len(r.template_ids) > 1
    assert r.template_ids[0] == "paper.before" and "ext.after" in r.template_ids


def test_augmented_parts_are_shared_by_the_members_of_a_group():
    config = ComposeConfig(sample_rate=SR, augment="gain,noise")
    rs = recipes("b", config)
    fwd, rev = render_detailed(rs["forward"], WAVES), render_detailed(rs["reversed"], WAVES)
    np.testing.assert_array_equal(rev.audio[:5 * SR], fwd.audio[5 * SR:])
    fwd_parts = json.loads(rs["forward"].augment)["parts"]
    rev_parts = json.loads(rs["reversed"].augment)["parts"]
    assert len(fwd_parts) == 2 and fwd_parts[0] == rev_parts[1]     # planned, shared by the group
    plain = render(recipes("b")["forward"], WAVES)
    assert not np.array_equal(plain, fwd.audio)


def test_render_applies_the_planned_augmentation_parameters_exactly():
    from teminal.pipeline import audio as A
    from teminal.pipeline.augment import AugmentChain

    config = ComposeConfig(sample_rate=SR, augment="gain,noise,lowpass")
    # the first seed whose plan applies a gain step (each step applies with p = 0.5)
    r = next(r for seed in range(50) for r in [recipes("a", config, seed)["single"]]
             if any(a["name"] == "gain" for a in json.loads(r.augment)["parts"][0]["applied"]))
    params = json.loads(r.augment)["parts"][0]
    part, _ = A.normalize_loudness(WAVES["src-a"], r.target_db)
    expected = A.fit_to_length(AugmentChain(params["spec"]).apply(part, SR, params),
                               r.num_samples, "repeat")
    expected, _ = A.peak_limit(expected, r.ceiling)
    np.testing.assert_array_equal(render(r, WAVES), expected)
    no_gain = dict(params, applied=[a for a in params["applied"] if a["name"] != "gain"])
    edited = SampleRecipe.from_dict({**r.to_dict(), "augment": json.dumps(
        {"spec": json.loads(r.augment)["spec"], "parts": [no_gain]})})
    assert not np.array_equal(render(edited, WAVES), render(r, WAVES))


def test_loudness_target_and_ceiling_come_from_the_config_through_the_recipe():
    quiet = recipes("a", ComposeConfig(sample_rate=SR, clip_seconds=10.0, target_db=-30.0))["single"]
    loud = recipes("a")["single"]
    assert (quiet.target_db, loud.target_db, loud.ceiling) == (-30.0, -20.0, CEILING)
    q, l_ = render(quiet, WAVES), render(loud, WAVES)
    level = lambda x: 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))  # noqa: E731
    assert abs((level(l_) - level(q)) - 10.0) < 0.1
    low = recipes("b", ComposeConfig(sample_rate=SR, ceiling=0.5),
                  waves={"src-a": np.float32(0.9) * np.sign(tone(200)), "src-b": tone(4000)})
    assert np.abs(render(low["overlay"], {"src-a": np.float32(0.9) * np.sign(tone(200)),
                                          "src-b": tone(4000)})).max() <= 0.5
    with pytest.raises(ValueError, match="ceiling"):
        ComposeConfig(ceiling=1.5)
    with pytest.raises(ValueError, match="target_db"):
        ComposeConfig(target_db=3.0)


def test_a_recipe_of_another_version_is_refused_with_how_to_fix():
    old = SampleRecipe.from_dict({k: v for k, v in recipes("a")["single"].to_dict().items()
                                  if k != "recipe_version"})
    assert old.recipe_version == 1
    with pytest.raises(ValueError, match="version 1.*rebuild"):
        render(old, WAVES)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="pad policy"):
        ComposeConfig(pad="mirror")
    with pytest.raises(ValueError, match="snr-range.*low end"):
        ComposeConfig(snr_range=(5.0, -5.0))
    with pytest.raises(KeyError, match="no waveform"):
        render(recipes("b")["forward"], {"src-a": WAVES["src-a"]})


def reference_peak_limit(x: np.ndarray, ceiling: float) -> tuple[np.ndarray, float]:
    """The limiter by its definition: scale down until the scaled buffer's own peak is at most
    the ceiling (a pass over the scaled buffer per try)."""
    x = np.asarray(x, dtype=np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= ceiling:
        return x.copy(), 0.0
    gain = np.float32(ceiling / peak)
    y = x * gain
    while float(np.max(np.abs(y))) > ceiling:
        gain = np.nextafter(gain, np.float32(0))
        y = x * gain
    return y, float(20.0 * np.log10(float(gain)))


def test_padding_and_limiting_helpers_match_the_audio_primitives():
    from teminal.pipeline import audio as A
    from teminal.pipeline.compose import _add_padded

    x = tone(300, seconds=0.7, level=0.9)
    for policy in ("repeat", "zero"):
        out = np.zeros(2 * SR, dtype=np.float32)
        _add_padded(out, 0, 2 * SR, x, policy)
        np.testing.assert_array_equal(out, A.fit_to_length(x, 2 * SR, policy))
    loud = np.float32(3.7) * tone(100, seconds=1.0)
    for y in (loud, loud * np.float32(0.1)):
        theirs = reference_peak_limit(y, CEILING)
        copied = A.peak_limit(y, CEILING)
        mine = A.peak_limit(y.copy(), CEILING, in_place=True)            # scales its buffer
        known = A.peak_limit(y.copy(), CEILING, (y.max(), y.min()), in_place=True)  # no pass
        for result in (copied, mine, known):
            np.testing.assert_array_equal(result[0], theirs[0])
            assert result[1] == pytest.approx(theirs[1], abs=1e-12)


def test_limiter_gain_from_the_extremes_equals_the_gain_from_the_scaled_buffer():
    """float32 rounding is monotonic, so the limiter may check max(x) * g instead of max(x * g);
    random peaks near the ceiling exercise the one-ulp correction."""
    from teminal.pipeline import audio as A

    rng = np.random.default_rng(0)
    for _ in range(200):
        y = (rng.standard_normal(257) * rng.uniform(0.3, 3.0)).astype(np.float32)
        theirs = reference_peak_limit(y, CEILING)
        for mine in (A.peak_limit(y.copy(), CEILING, (y.max(), y.min()), in_place=True),
                     A.peak_limit(y, CEILING)):
            np.testing.assert_array_equal(mine[0], theirs[0])
            assert mine[1] == theirs[1]
