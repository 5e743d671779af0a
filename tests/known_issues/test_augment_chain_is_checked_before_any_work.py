"""Issue 23.10 (augment part): a bad `--augment` chain was found only in the shard workers, so
every shard failed after OUT was claimed, and the corrected build was then refused as "another
build". `augment.check_chain` (called by BuildConfig) now parses the chain, builds it and runs
every transform once on a test signal at the build's rate before any work; a bad one is one
line naming --augment, and nothing is written."""
from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from build_helpers import quick_build
from teminal.pipeline.augment import check_chain
from teminal.pipeline.cli import main


@pytest.mark.parametrize("chain,expected", [
    ("foo", "unknown augmentation 'foo'"),
    ("gain,gain", "augmentation 'gain' appears twice"),
    ("gain,,reverse", "unknown augmentation 'reverse'"),
    ("pitch, noise ,Gain", "unknown augmentation 'Gain'"),
])
def test_a_bad_chain_is_refused_before_out_is_claimed_and_the_fix_then_builds(
        small_source, tmp_path, chain, expected):
    out = tmp_path / "out"
    args = ["build", "--root", str(small_source), "--out", str(out), "--no-progress",
            "--stages", "b", "--sample-rate", "16000", "--clip-seconds", "1", "--shard-size", "4"]
    result = CliRunner().invoke(main, args + ["--augment", chain])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert f"--augment {chain!r}: {expected}" in result.output and not out.exists()
    fixed = CliRunner().invoke(main, args + ["--augment", "gain,noise"])
    assert fixed.exit_code == 0, fixed.output


@pytest.mark.parametrize("spec,expected", [
    ({"pitch": {"min_semitones": 50, "max_semitones": 60}}, "fails on a test signal at 16000 Hz"),
    ({"stretch": {"min_rate": 0.0, "max_rate": 0.0}}, "fails on a test signal"),
    ({"gain": {"loudness": 3}}, "has no option(s) loudness"),
    ([("highpass", {"min_cutoff_freq": 500.0, "max_cutoff_freq": 100.0})], "fails on a test"),
    ({"gain": {"min_gain_db": "loud"}}, "fails on a test signal"),
])
def test_options_that_would_fail_every_shard_are_refused(spec, expected):
    with pytest.raises(ValueError, match=r"^--augment .*" + expected.replace("(", r"\(")
                       .replace(")", r"\)")):
        check_chain(spec, 16000)


def test_a_missing_audiomentations_is_named_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "audiomentations", None)
    with pytest.raises(ValueError, match="needs the audiomentations package.*pip install"):
        check_chain("gain", 16000)


def test_no_chain_and_good_chains_pass_without_work(small_source, tmp_path):
    for spec in (None, "", "none", "gain,pitch,stretch,noise,snr,lowpass,highpass"):
        check_chain(spec, 16000)
    assert quick_build(small_source, tmp_path / "out").catalog   # no augment: unchanged
