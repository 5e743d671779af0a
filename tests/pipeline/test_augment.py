from __future__ import annotations

import json
import random

import numpy as np
import pytest

from teminal.pipeline.augment import AugmentChain, parse_spec

SR = 16000
ALL_ON = {name: {"p": 1.0} for name in ("gain", "pitch", "stretch", "noise", "snr", "lowpass", "highpass")}


@pytest.fixture(scope="module")
def wave():
    t = np.arange(SR // 2) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)).astype(np.float32)


@pytest.mark.parametrize("spec", [None, "", "none", [], {}])
def test_no_spec_is_identity(wave, spec):
    y, params = AugmentChain(spec)(wave, SR, seed=1)
    assert params == {} and np.array_equal(y, wave) and y is not wave
    assert not AugmentChain(spec)


def test_same_seed_same_result_other_seed_other_result(wave):
    chain = AugmentChain(ALL_ON)
    y1, p1 = chain(wave, SR, seed=7)
    y2, p2 = AugmentChain(ALL_ON)(wave, SR, seed=7)
    y3, p3 = chain(wave, SR, seed=8)
    assert np.array_equal(y1, y2) and p1 == p2
    assert not np.array_equal(y1, y3) and p1["applied"] != p3["applied"]


def test_params_record_exactly_what_was_applied(wave):
    y, params = AugmentChain(ALL_ON)(wave, SR, seed=3)
    assert json.loads(json.dumps(params)) == params  # goes into the `augment` column as JSON
    assert params["seed"] == 3
    assert [a["name"] for a in params["applied"]] == list(ALL_ON)
    by_name = {a["name"]: a for a in params["applied"]}
    assert -6 <= by_name["gain"]["gain_db"] <= 6
    assert -2 <= by_name["pitch"]["num_semitones"] <= 2
    assert 0.9 <= by_name["stretch"]["rate"] <= 1.1
    none_applied = AugmentChain({"gain": {"p": 0.0}, "noise": {"p": 0.0}})(wave, SR, seed=3)
    assert none_applied[1]["applied"] == [] and np.array_equal(none_applied[0], wave)


def test_fixed_gain_is_exact(wave):
    y, params = AugmentChain({"gain": {"p": 1.0, "min_gain_db": 6.0, "max_gain_db": 6.0}})(wave, SR, seed=0)
    assert params["applied"][0]["gain_db"] == pytest.approx(6.0)
    np.testing.assert_allclose(y, wave * 10 ** (6 / 20), rtol=1e-6)


def test_length_and_dtype_are_kept(wave):
    for name in ALL_ON:
        y, _ = AugmentChain({name: {"p": 1.0}})(wave, SR, seed=5)
        assert y.shape == wave.shape and y.dtype == np.float32 and np.isfinite(y).all(), name


def test_global_random_state_is_untouched(wave):
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    AugmentChain(ALL_ON)(wave, SR, seed=99)
    assert (random.random(), np.random.rand()) == expected


def test_result_does_not_depend_on_global_state(wave):
    random.seed(1)
    np.random.seed(1)
    a = AugmentChain("gain,noise,pitch")(wave, SR, seed=11)
    random.seed(2)
    np.random.seed(2)
    b = AugmentChain("gain,noise,pitch")(wave, SR, seed=11)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_replay_from_recorded_json(wave):
    """What rendering does with a recipe's `augment` column: the chain rebuilt from the
    recorded spec applies the recorded parameters exactly."""
    y, params = AugmentChain("gain,pitch,noise")(wave, SR, seed=21)
    recorded = json.loads(json.dumps(params))
    assert np.array_equal(AugmentChain(recorded["spec"]).apply(wave, SR, recorded), y)
    assert np.array_equal(AugmentChain(None).apply(wave, SR, None), wave)
    assert np.array_equal(AugmentChain(recorded["spec"]).apply(wave, SR, {}), wave)


def test_spec_forms_and_errors():
    assert [n for n, _ in parse_spec("gain, pitch,noise")] == ["gain", "pitch", "noise"]
    assert parse_spec(["gain", ("noise", {"p": 1.0})])[1][1]["p"] == 1.0
    assert parse_spec({"gain": None})[0][1]["min_gain_db"] == -6.0
    with pytest.raises(ValueError, match="unknown augmentation 'reverse'"):
        parse_spec("gain,reverse")
    with pytest.raises(ValueError, match="has no option"):
        parse_spec({"gain": {"semitones": 3}})
    with pytest.raises(ValueError, match="appears twice"):
        parse_spec("gain,gain")
