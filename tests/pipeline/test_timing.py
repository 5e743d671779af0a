"""Timing of compositions (issue 25): where the second event starts (`--junction`), silence
between the events (`--gap`), a late second sound in overlays (`--overlay-start`).

The default is the paper's midpoint, and a default build must stay byte-identical to one made
before timing existed, so paper-protocol figures stay comparable."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from teminal.manifests.catalog import connect, fetch_dicts, read_table
from teminal.pipeline.build import run_build
from teminal.pipeline.cli import main
from teminal.pipeline.compose import (RECIPE_VERSION, TIMING_DEFAULTS, ComposeConfig,
                                      SampleRecipe, make_group_recipes, min_event_seconds, render,
                                      retime)
from teminal.pipeline.config import BuildConfig
from teminal.pipeline.sources.base import SourceClip

pytestmark = pytest.mark.filterwarnings("ignore:WebDataset\\(shardshuffle")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """3 classes x 5 folds x 1 clip of the synthetic ESC-50 (read-only)."""
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    return write_synthetic_esc50(tmp_path_factory.mktemp("timing") / "src",
                                 clips_per_class_per_fold=1, classes=CLASS_NAMES[:3])


def file_digests(out: Path) -> dict[str, str]:
    files = sorted(out.glob("shards/*/*.tar")) + sorted(out.glob("manifests/*.parquet"))
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def rows(out: Path, sql: str) -> list[dict]:
    con = connect(out)
    try:
        return fetch_dicts(con, sql)
    finally:
        con.close()


def rows_without_root(out: Path, table: str, root: Path) -> str:
    """A table's rows as JSON with the dataset folder written as <ROOT> (the `sources` paths
    and the builds table's config name where the build read its sources)."""
    rows = read_table(out / "manifests" / f"{table}.parquet")
    return json.dumps(rows, sort_keys=True).replace(str(root.resolve()), "<ROOT>")


# ---------------------------------------------------------------------------------------------
# The midpoint regression

# Recorded from the code before timing existed (commit c8a03e3, branch `timing`'s base), with
# `midpoint_build` below: stages a and b, 16 kHz, 16001 samples per member (odd, so the midpoint
# is n // 2 and the two slots differ by one sample), 2 groups per shard. The tars and the
# path-free Parquet files are compared byte for byte; `sources` and `builds` name the dataset
# folder (a temporary path), so their rows are compared with that folder replaced by <ROOT>.
# These digests also depend on the pinned libsndfile (FLAC bytes), duckdb (Parquet bytes) and
# the synthetic generator: if one of those changes on purpose, re-record them by running
# `midpoint_build` on a checkout of commit c8a03e3 with the new pins.
MIDPOINT_BUILD_ID = "7319fa3469a44968"
MIDPOINT_FILES = {
    "shards/a/test-000000.tar": "7b46a238c8dbb30a6e65ff7ee96de7e9a5b2a55aeaaea52ef7afe1b7ffa202d6",
    "shards/a/test-000001.tar": "9df6dded01e738b08189c897182c0ca932c5edd0b1d83d2ddbdeb360869d4056",
    "shards/a/train-000000.tar": "8700ae031e5d29a8d7a646bc6ed45fd132fd3537786f70ffe1f63ff387135a81",
    "shards/a/train-000001.tar": "efc6f88a252559ecfbabc900810d7bd79c6e0c911f29dd034d96c70be40e50b7",
    "shards/a/train-000002.tar": "5efb3b256484d4e63e3364ad775950933d10ffdce8a59fc6f30f5b6f1e2a2843",
    "shards/a/train-000003.tar": "13509de0acf62cce7c8908985dd96c09f9dcf00fbfd3cc3cae9238978f37c07a",
    "shards/a/train-000004.tar": "891b01822e0a9e2de091fbd1c87cc0e1a17d5de84046fde66b88a20988112690",
    "shards/a/val-000000.tar": "912f2586093335c9d35de8f48bcf72d42e74e6fe33f03a00ccc12152c8ff2a12",
    "shards/a/val-000001.tar": "b17c0bc1261758e3986ab0ee3bd16fd847bb7cb0ba21282c235be89bfddac362",
    "shards/b/test-000000.tar": "31c6b7cc1ca086c71acab46727eacba5901979daaa8dfb955721118c968cf5ee",
    "shards/b/test-000001.tar": "27184dfb54f6e95cf2ee21dbaf658257c7be86715c35e63dd98999ef40784656",
    "shards/b/train-000000.tar": "2b432e593ccfe932b074bbe8b057078ed417c62198693a8f91bbc79c5d6cc883",
    "shards/b/train-000001.tar": "4eddd6e0fe85b8e0971087d8cc52cf8eed448706c98147ba024a033764a22150",
    "shards/b/train-000002.tar": "5063dc5dc0a98ad22c96bbb56fa28c7dc7d48e62c619e692f0174d0ec5f4b94e",
    "shards/b/train-000003.tar": "eb1c963301fcf0f4da35b3e5cebdcb51826a970436f56b16a148b98b7f72a617",
    "shards/b/train-000004.tar": "6a47f98b88e7276154062166c5c271b02de89d9ffe8c52ae2b2f06518ce308cd",
    "shards/b/val-000000.tar": "0b68615c6666e4591bb259ba19882ec1cf79c69cf868f894db0f1a178b987eb1",
    "shards/b/val-000001.tar": "92c9c9c527da289c6f8776b3ceca18e960d2b0301614f28215511d185bacdfba",
    "manifests/rejects.parquet": "4697269f790a060821afd4bda55ffeafc3aeb65bba3beca4ac4551840cb3d113",
    "manifests/samples.parquet": "92d512e0ae05b3c8ee3435c2983b6f2854bf4cf94f209ec93c888ce518f872a6",
    "manifests/shards.parquet": "d19802a092d7b15fc6de9bbc976792e1e5a1f6ceda38e620e5df371d8bbf9ec8",
}
MIDPOINT_SOURCES_ROWS = "76cbfc68fee0adc23ef4a4ba89f857848ceee1c3508ef0550fffc5bf941e1003"
MIDPOINT_BUILDS_CONFIG = (
    '{"codec": "flac", "compose": {"augment": null, "ceiling": 0.99, "clip_seconds": 1.0000625, '
    '"key_prefix": "esc50", "pad": "repeat", "sample_rate": 16000, "snr_range": [-5.0, 5.0], '
    '"target_db": -20.0, "template_set": "paper"}, "dataset": "esc50", "groups": null, '
    '"groups_per_clip": 1.0, "root": "<ROOT>", "seed": 0, "shard_size": 2, "splits": null, '
    '"stages": ["a", "b"]}')


def midpoint_build(root: Path, out: Path, **compose):
    config = BuildConfig(out=str(out), root=str(root), shard_size=2, compose=ComposeConfig(
        sample_rate=16000, clip_seconds=1.0000625, **compose))
    assert config.compose.num_samples == 16001
    return run_build(config, progress=False, log=lambda *_: None)


@pytest.mark.parametrize("timing", [{}], ids=["defaults"])
def test_a_default_timing_build_is_byte_identical_to_one_made_before_timing_existed(
        small_root, tmp_path, timing):
    out = tmp_path / "out"
    summary = midpoint_build(small_root, out, **timing)
    assert summary.build_id == MIDPOINT_BUILD_ID
    digests = file_digests(out)
    assert {k: digests[k] for k in MIDPOINT_FILES} == MIDPOINT_FILES
    sources = rows_without_root(out, "sources", small_root)
    assert hashlib.sha256(sources.encode()).hexdigest() == MIDPOINT_SOURCES_ROWS
    builds = json.loads(rows_without_root(out, "builds", small_root))
    assert [b["config"] for b in builds] == [MIDPOINT_BUILDS_CONFIG]


# ---------------------------------------------------------------------------------------------
# Recipes and rendering (a synthetic pair: a is a quiet low tone, b a loud high one)

SR = 16000


def tone(freq: float, seconds: float = 5.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def clip(sid: str, label: str) -> SourceClip:
    return SourceClip(source_id=sid, dataset="esc50", path=f"/x/{sid}.wav", split="test",
                      fold=5, label=label, sample_rate=SR, duration=5.0)


A, B = clip("src-a", "low hum"), clip("src-b", "high whistle")
WAVES = {"src-a": tone(200, level=0.05), "src-b": tone(4000, level=0.8)}


def recipes(stage: str = "b", index: int = 7, waves=WAVES, **timing) -> dict[str, SampleRecipe]:
    config = ComposeConfig(sample_rate=SR, clip_seconds=10.0, **timing)
    return {r.relation: r for r in make_group_recipes(stage, "test", index, A, B, config, 0, waves)}


def low_share(x: np.ndarray) -> float:
    """The share of the low tone (a) in the energy of x: 1 is a alone, 0 is b alone."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    low, high = spec[(freqs >= 50) & (freqs < 1000)].sum(), spec[(freqs >= 2000)].sum()
    return float(low / (low + high))


def test_a_junction_at_0_3_renders_the_first_event_in_the_first_30_percent_of_the_samples():
    rs = recipes(junction=0.3)
    fwd, rev = render(rs["forward"], WAVES), render(rs["reversed"], WAVES)
    cut = 3 * SR
    assert low_share(fwd[:cut]) > 0.999 and low_share(fwd[cut:]) < 0.001
    # reversed is the same pair in the other order, each event keeping its length: b first for
    # 70% of the clip, then a
    assert low_share(rev[:10 * SR - cut]) < 0.001 and low_share(rev[10 * SR - cut:]) > 0.999
    assert rs["forward"].offsets == [0.0, 3.0] and rs["reversed"].offsets == [0.0, 7.0]
    assert rs["forward"].slot_lengths == [3.0, 7.0] and rs["reversed"].slot_lengths == [7.0, 3.0]


def test_reversed_holds_the_same_two_parts_as_forward_in_the_other_order():
    rs = recipes(junction=0.3)
    fwd, rev = render(rs["forward"], WAVES), render(rs["reversed"], WAVES)
    np.testing.assert_array_equal(rev[:7 * SR], fwd[3 * SR:])
    np.testing.assert_array_equal(rev[7 * SR:], fwd[:3 * SR])


def test_stage_a_double_has_its_junction_where_forward_has_it():
    rs = recipes("a", junction=0.7)
    double = render(rs["double"], WAVES)
    assert low_share(double[:7 * SR]) > 0.999 and low_share(double[7 * SR:]) < 0.001
    assert rs["single"].offsets == [0.0] and rs["single"].slot_lengths == [10.0]


def test_a_gap_is_silence_before_the_second_event():
    rs = recipes(junction=0.5, gap=1.0)
    fwd, rev = render(rs["forward"], WAVES), render(rs["reversed"], WAVES)
    assert not fwd[4 * SR:5 * SR].any() and np.abs(fwd[5 * SR:]).min() < np.abs(fwd[5 * SR:]).max()
    assert low_share(fwd[:4 * SR]) > 0.999 and low_share(fwd[5 * SR:]) < 0.001
    # reversed: b keeps its 5 s, the same 1 s of silence, then a's 4 s
    assert not rev[5 * SR:6 * SR].any()
    assert low_share(rev[:5 * SR]) < 0.001 and low_share(rev[6 * SR:]) > 0.999
    assert rs["reversed"].offsets == [0.0, 6.0] and rs["reversed"].slot_lengths == [5.0, 4.0]


def test_an_overlay_start_delays_the_second_sound_which_then_plays_to_the_end():
    r = recipes(overlay_start=0.4)["overlay"]
    y = render(r, WAVES)
    assert r.offsets == [0.0, 4.0] and r.slot_lengths == [10.0, 6.0]
    assert low_share(y[:4 * SR]) > 0.999
    # b (5 s) is repeat-padded over its 6 s slot, like any short overlay part: both sound
    # together from 4 s to the end
    for second in range(4, 10):
        assert 0.01 < low_share(y[second * SR:(second + 1) * SR]) < 0.99, second


def test_the_defaults_plan_the_midpoint_recipes_that_builds_made_before_timing():
    rs = recipes(junction=0.5, gap=0, overlay_start=0)
    assert all(r.recipe_version == RECIPE_VERSION and r.slot_lengths is None for r in rs.values())
    assert all("slot_lengths" not in r.to_dict() for r in rs.values())
    assert rs["forward"].offsets == rs["reversed"].offsets == [0.0, 5.0]
    assert rs["overlay"].offsets == [0.0, 0.0]
    default = ComposeConfig(sample_rate=SR)
    assert ComposeConfig(sample_rate=SR, junction=(0.5, 0.5), gap=0.0).to_dict() == default.to_dict()
    assert not set(TIMING_DEFAULTS) & set(default.to_dict())


def test_timing_draws_come_from_the_group_seed_and_leave_the_earlier_draws_alone():
    ranges = dict(junction=(0.2, 0.8), gap=(0.0, 0.5), overlay_start=(0.0, 0.4))
    drawn = [recipes(index=i, **ranges) for i in range(20)]
    assert [r["forward"].to_dict() for r in drawn] == \
        [recipes(index=i, **ranges)["forward"].to_dict() for i in range(20)]
    junctions = [r["forward"].offsets[1] / 10 for r in drawn]
    gaps = [r["forward"].offsets[1] - r["forward"].slot_lengths[0] for r in drawn]
    starts = [r["overlay"].offsets[1] / 10 for r in drawn]
    assert all(0.2 <= j <= 0.8 for j in junctions) and len(set(junctions)) == 20
    assert all(-1e-9 <= g <= 0.5 + 1e-9 for g in gaps) and len(set(gaps)) == 20
    assert all(0 <= s <= 0.4 for s in starts) and len(set(starts)) == 20
    # the SNR, captions and seed are those of the same group without timing
    for i, timed in enumerate(drawn):
        plain = recipes(index=i)
        for relation, r in timed.items():
            assert (r.snr_db, r.caption, r.seed) == \
                (plain[relation].snr_db, plain[relation].caption, plain[relation].seed)
    # narrowing one range does not move the others' draws
    fixed_gap = [recipes(index=i, **(ranges | {"gap": 0.25})) for i in range(5)]
    assert [r["forward"].offsets for r in fixed_gap] == [r["forward"].offsets for r in drawn[:5]]


def test_render_reads_the_recorded_slots_back():
    r = recipes(junction=0.3)["forward"]
    moved = SampleRecipe.from_dict(r.to_dict() | {"slot_lengths": [2.0, 7.0]})
    y = render(moved, WAVES)
    assert not y[2 * SR:3 * SR].any() and np.abs(render(r, WAVES)[2 * SR:3 * SR]).max() > 0
    with pytest.raises(ValueError, match="slot_lengths.*plan it again"):
        render(SampleRecipe.from_dict(r.to_dict() | {"slot_lengths": None}), WAVES)
    with pytest.raises(ValueError, match="slot_lengths.*plan it again"):
        render(SampleRecipe.from_dict(r.to_dict() | {"recipe_version": RECIPE_VERSION}), WAVES)


def test_retime_plans_a_recipe_as_a_build_with_that_fixed_junction_would():
    timed = recipes(junction=(0.3, 0.7), gap=0.25, overlay_start=0.2)
    for relation in ("forward", "reversed"):
        again = retime(timed[relation], 0.6, WAVES)
        assert again.to_dict() == recipes(junction=0.6, gap=0.25)[relation].to_dict()
        # and back: at 0.5 with no gap, the midpoint recipe of a default build
        midpoint = retime(recipes(junction=0.3)[relation], 0.5, WAVES)
        assert midpoint.to_dict() == recipes()[relation].to_dict()
        assert retime(recipes()[relation], 0.3, WAVES).to_dict() == \
            recipes(junction=0.3)[relation].to_dict()
    rev = render(retime(recipes()["reversed"], 0.3, WAVES), WAVES)
    assert low_share(rev[:7 * SR]) < 0.001 and low_share(rev[7 * SR:]) > 0.999
    assert retime(timed["overlay"], 0.6, WAVES).to_dict() == timed["overlay"].to_dict()
    with pytest.raises(ValueError, match="--junction"):
        retime(timed["forward"], 1.2, WAVES)


def test_retime_clears_what_described_the_stored_member():
    stored = recipes(junction=0.4)["forward"]
    stored.sha256, stored.gains_db = "ab" * 32, [0.0, -1.0]
    again = retime(stored, 0.3, WAVES)
    assert again.sha256 == "" and again.gains_db == []
    assert stored.offsets == [0.0, 4.0]   # the input is left as it was


BAD_TIMING = [
    (dict(junction=0.0), "--junction 0: give fractions of the clip in (0, 1)"),
    (dict(junction=1.0), "--junction 1"), (dict(junction=-0.2), "--junction"),
    (dict(junction=float("nan")), "--junction nan"), (dict(junction=float("inf")), "--junction"),
    (dict(junction=(0.7, 0.3)), "--junction 0.7,0.3: the low end is above the high end"),
    (dict(junction=(0.3, 0.5, 0.7)), "--junction"), (dict(junction="0.3"), "--junction"),
    (dict(junction=True), "--junction"),
    (dict(gap=-1.0), "--gap -1"), (dict(gap=(1.0, 0.5)), "--gap 1,0.5: the low end"),
    (dict(gap=float("nan")), "--gap"),
    (dict(gap=9.6), "each event keeps at least 0.5 s"),
    (dict(junction=0.1, gap=0.6), "leaves the first event 0.4 s"),
    (dict(junction=(0.3, 0.96)), "leaves the second event 0.4 s"),
    (dict(overlay_start=1.0), "--overlay-start 1"), (dict(overlay_start=-0.1), "--overlay-start"),
    (dict(overlay_start=(0.5, 0.2)), "--overlay-start 0.5,0.2: the low end"),
    (dict(overlay_start=0.97), "leaves the late sound"),
]


@pytest.mark.parametrize("timing,message", BAD_TIMING, ids=[m for _, m in BAD_TIMING])
def test_bad_timing_values_are_refused_naming_the_option(timing, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ComposeConfig(sample_rate=SR, clip_seconds=10.0, **timing)


def test_short_clips_keep_a_tenth_of_the_clip_per_event():
    assert min_event_seconds(10.0) == 0.5 and min_event_seconds(1.0) == pytest.approx(0.1)
    ComposeConfig(sample_rate=SR, clip_seconds=1.0, junction=0.1)
    with pytest.raises(ValueError, match="at least 0.1 s"):
        ComposeConfig(sample_rate=SR, clip_seconds=1.0, junction=0.2, gap=0.15)


CLI_BAD = [
    (["--junction", "1.5"], "--junction"), (["--junction", "0"], "--junction"),
    (["--junction", "nan"], "--junction"), (["--junction", "abc"], "--junction"),
    (["--junction", "0.2,"], "--junction"), (["--junction", "0.2,0.4,0.6"], "--junction"),
    (["--junction", "0.8,0.2"], "low end is above"),
    (["--gap", "-0.5"], "--gap"), (["--gap", "inf"], "--gap"), (["--gap", "0,0.9"], "--gap"),
    (["--overlay-start", "1"], "--overlay-start"), (["--overlay-start", "x,y"], "--overlay-start"),
]


@pytest.mark.parametrize("args,named", CLI_BAD, ids=[" ".join(a) for a, _ in CLI_BAD])
def test_a_bad_timing_option_exits_naming_it_before_any_work(small_root, tmp_path, args, named):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--root", str(small_root), "--out", str(out),
                                       "--clip-seconds", "2", "--no-progress", *args])
    assert result.exit_code != 0, result.output
    assert named in result.output and "Traceback" not in result.output, result.output
    assert not out.exists(), "work started before the options were checked"


# ---------------------------------------------------------------------------------------------
# A timed build end to end

TIMED = dict(junction=(0.2, 0.8), gap=(0.0, 0.2), overlay_start=(0.0, 0.4))


def timed_config(root: Path, out: Path, **kw) -> BuildConfig:
    return BuildConfig(out=str(out), root=str(root), shard_size=4, compose=ComposeConfig(
        sample_rate=16000, clip_seconds=2.0, **TIMED), **kw)


@pytest.fixture(scope="module")
def timed_build(small_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("timed") / "out"
    summary = run_build(timed_config(small_root, out), progress=False, log=lambda *_: None)
    return out, summary, file_digests(out)


def test_a_timed_build_is_byte_identical_with_any_number_of_workers(small_root, tmp_path,
                                                                    timed_build):
    digests = timed_build[2]
    run_build(timed_config(small_root, tmp_path / "parallel", workers=2), progress=False,
              log=lambda *_: None)
    assert file_digests(tmp_path / "parallel") == digests
    assert len(digests) == 15   # 10 shards, 5 manifests


def test_the_timing_settings_are_in_the_build_id_and_the_builds_config(small_root, tmp_path,
                                                                       timed_build):
    out = timed_build[0]
    (config,) = rows(out, "SELECT config FROM builds")
    compose = json.loads(config["config"])["compose"]
    assert {k: compose[k] for k in TIMED} == {k: list(v) for k, v in TIMED.items()}
    base = timed_config(small_root, tmp_path)
    for changed in (dict(junction=0.3), dict(gap=(0.0, 0.1)), dict(overlay_start=0.0)):
        other = dataclasses.replace(base, compose=dataclasses.replace(base.compose, **changed))
        assert other.identity() != base.identity(), changed


def test_sql_sees_where_each_event_lies(timed_build):
    out, _, _ = timed_build
    assert rows(out, "SELECT DISTINCT recipe_version AS v FROM samples") == [{"v": 3}]
    forward = rows(out, """
        SELECT f.offsets[2] / 2.0 AS junction, f.offsets[2] - f.slot_lengths[1] AS gap,
               f.slot_lengths AS fwd, r.slot_lengths AS rev, r.offsets[2] AS rev_start
        FROM samples f JOIN samples r ON f.group_key = r.group_key
        WHERE f.relation = 'forward' AND r.relation = 'reversed'""")
    assert len(forward) == 15
    for r in forward:
        assert 0.2 <= r["junction"] <= 0.8 and -1e-9 <= r["gap"] <= 0.2 + 1e-9
        assert r["rev"] == r["fwd"][::-1]
        assert r["rev_start"] == pytest.approx(r["fwd"][1] + r["gap"])
    starts = rows(out, "SELECT offsets[2] / 2.0 AS s FROM samples WHERE relation = 'overlay'")
    assert all(0 <= r["s"] <= 0.4 for r in starts) and len({r["s"] for r in starts}) > 1


def test_pipeline_render_and_verify_rerender_reproduce_a_timed_build(timed_build):
    out, _, _ = timed_build
    runner = CliRunner()
    for key in ("esc50-b-test-000001.reversed", "esc50-b-val-000000.overlay",
                "esc50-a-train-000002.double"):
        result = runner.invoke(main, ["render", key, "--data", str(out)])
        assert result.exit_code == 0 and "match:" in result.output, result.output
    result = runner.invoke(main, ["verify", str(out), "--rerender", "20"])
    assert result.exit_code == 0 and "20 recipes re-rendered" in result.output, result.output


def test_pipeline_info_shows_the_timing_settings(timed_build):
    out, _, _ = timed_build
    result = CliRunner().invoke(main, ["info", str(out)])
    assert result.exit_code == 0, result.output
    assert "junction 0.2..0.8 (drawn per group), reversed mirrored" in result.output
    assert "gap 0..0.2 s (drawn per group)" in result.output
    assert "overlay start 0..0.4 (drawn per group)" in result.output
    assert "gap_max_s" in result.output and "start_mean" in result.output


def test_pipeline_info_names_the_midpoint_of_a_default_build(small_root, tmp_path):
    midpoint_build(small_root, tmp_path / "out")
    result = CliRunner().invoke(main, ["info", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "junction 0.5 (the paper's midpoint)  gap 0 s  overlay start 0" in result.output
    assert "gap_max_s" not in result.output   # no slot_lengths column in a default build
