"""`pipeline build --dataset clotho|audiocaps` end to end, label-less rows everywhere, the
highest-energy cut of long parts, multi-dataset catalogs (`pipeline catalog --merge`) and
`pipeline download` on the command line."""
from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from teminal.manifests.catalog import connect, fetch_dicts
from teminal.pipeline.build import run_build
from teminal.pipeline.config import BuildConfig
from teminal.pipeline.plan import pairable_clips
from teminal.pipeline.render import rerender
from teminal.pipeline.captions import clean_caption
from teminal.pipeline.cli import main
from teminal.pipeline.compose import ComposeConfig, make_group_recipes, render_detailed
from teminal.pipeline.merge import merge_catalogs, merged_shard_path
from teminal.pipeline.sources import audiocaps, clotho
from teminal.pipeline.sources.base import SourceClip

SR = 8000
COMPOSE = ComposeConfig(sample_rate=SR, clip_seconds=2.0)
MEMBER = re.compile(r"^[A-Za-z0-9_-]+\.(json|[a-z]+\.flac)$")

pytestmark = pytest.mark.filterwarnings("ignore:WebDataset\\(shardshuffle")

# Clotho file names as Freesound titles: spaces, dots, colons, commas, non-ASCII, leading "-".
CLOTHO_TRAIN = {
    "Rain on a tin roof. 2.wav": "Rain falls steadily on a metal roof",
    "Kitchen: 12:30, pans.wav": "Pots and pans clatter in a busy kitchen",
    "Café ambience (Paris).wav": "Customers chat over cups in a cafe",
    "-leading dash.wav": "A motorcycle engine revs and idles",
    "dots.and.more.wav": "Birds chirp in the trees at dawn",
    "Zoë's  dog barks.wav": "A small dog barks at the mailman",
}
CLOTHO_TEST = {
    "Train: platform 9.wav": "A train horn blows as it arrives",
    "wind   through leaves.wav": "Strong wind rustles the leaves",
    "Ünïcödé typing.wav": "Someone types quickly on a keyboard",
    "door.slam.wav": "A heavy door slams shut",
}
CLOTHO_MISSING = "never recorded: ghost.wav"


def write_tone(path: Path, seed: int, sr: int = 22050, seconds: float = 3.0) -> Path:
    """A short non-silent clip that differs per seed (a tone plus a noise burst)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.2 * np.sin(2 * np.pi * (200 + 60 * seed) * t)
    start = int(rng.integers(0, len(t) // 2))
    x[start:start + sr // 4] += 0.3 * rng.standard_normal(min(sr // 4, len(t) - start))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr)
    return path


def captions_of(first: str, i: int) -> list[str]:
    """Five captions of one clip: the first as given, the others paraphrases of it."""
    return [first + "."] + [f"{first} (take {k}, clip {i})" for k in range(2, 6)]


def write_clotho(root: Path) -> Path:
    csvs = root / "clotho_csv_files"
    csvs.mkdir(parents=True)
    for split, clips, extra in (("development", CLOTHO_TRAIN, [CLOTHO_MISSING]),
                                ("evaluation", CLOTHO_TEST, [])):
        # ISO-8859-1, as the Clotho metadata (the non-ASCII names above are all Latin-1)
        with open(csvs / f"clotho_captions_{split}.csv", "w", newline="", encoding="iso-8859-1") as f:
            w = csv.writer(f)
            w.writerow(clotho.HEADER)
            for i, (name, caption) in enumerate(list(clips.items()) + [(n, "Nothing") for n in extra]):
                w.writerow([name] + captions_of(caption, i))
        for i, name in enumerate(clips):
            write_tone(root / "clotho_audio_files" / split / name, seed=i + len(split))
    return root


# AudioCaps: youtube ids with leading "-" and "_"; train 1 caption per clip, val/test 5.
AC_TRAIN = [("-0Gj8-vB1q4", "30", "A dog barks while birds chirp"),
            ("_a_b-c", "0", "An engine idles then accelerates away"),
            ("xYz123", "12.5", "Rain pours onto a tent"),
            ("-Q9", "100", "A crowd applauds and cheers loudly"),
            ("missing1", "10", "Water splashes in a bathtub"),
            ("missing2", "20", "A baby cries in a quiet room")]
AC_VAL = [("val-only", "5", "Thunder rumbles in the distance"),
          ("valmissing", "5", "A bell rings twice")]
AC_TEST = [("t1", "0", "A man speaks over a radio"),
           ("-t2", "3", "Footsteps on gravel approach"),
           ("t3", "7", "Glass shatters on a hard floor")]


def write_audiocaps(root: Path) -> Path:
    root.mkdir(parents=True)
    n = 0
    for split, clips in (("train", AC_TRAIN), ("val", AC_VAL), ("test", AC_TEST)):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(audiocaps.HEADER)
            for yt, start, caption in clips:
                for k in range(1 if split == "train" else 5):
                    n += 1
                    w.writerow([n, yt, start, caption + ("" if k == 0 else f", version {k}")])
        for i, (yt, start, _) in enumerate(clips):
            if yt.startswith(("missing", "valmissing")):
                continue  # missing audio: the normal case for AudioCaps
            # test audio uses a form only a --name-template finds
            name = f"yt={yt}@{start}.wav" if split == "test" else f"{yt}_{start}.wav"
            write_tone(root / "audio" / split / name, seed=10 + i, sr=16000, seconds=10.0)
    return root


def build(out, root, dataset, **kw):
    kw.setdefault("shard_size", 2)
    kw.setdefault("compose", COMPOSE)
    return run_build(BuildConfig(out=str(out), root=str(root), dataset=dataset, **kw),
                     progress=False, log=lambda m: None)


def rows(out: Path, sql: str, params=()) -> list[dict]:
    con = connect(out)
    try:
        return fetch_dicts(con, sql, params)
    finally:
        con.close()


@pytest.fixture(scope="module")
def clotho_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clotho")
    root = write_clotho(tmp / "clotho")
    out = tmp / "out"
    return root, out, build(out, root, "clotho")


@pytest.fixture(scope="module")
def audiocaps_root(tmp_path_factory):
    return write_audiocaps(tmp_path_factory.mktemp("audiocaps") / "audiocaps")


@pytest.fixture(scope="module")
def esc50_build(tmp_path_factory):
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    tmp = tmp_path_factory.mktemp("esc50")
    root = write_synthetic_esc50(tmp / "esc50", seed=0, clips_per_class_per_fold=1,
                                 classes=CLASS_NAMES[:4])
    out = tmp / "out"
    return out, build(out, root, "esc50")


# ---------------------------------------------------------------------------------------------
# Clotho layout

def test_clotho_build_summary_counts_missing_audio_and_skips_the_absent_split(clotho_build):
    _, out, summary = clotho_build
    assert summary.catalog and summary.clips == 10
    assert summary.rejects == {"missing audio": 1}
    assert any("split val" in n and "skipped" in n for n in summary.notes)  # v1 layout: no validation
    assert "missing audio: 1" in summary.format() and "note     split val" in summary.format()
    (reject,) = rows(out, "SELECT * FROM rejects")
    assert reject["dataset"] == "clotho" and reject["phase"] == "scan"
    assert reject["path"].endswith(CLOTHO_MISSING) and reject["reason"] == "missing audio"


def test_clotho_odd_names_are_found_and_keys_stay_safe(clotho_build):
    _, out, _ = clotho_build
    names = {Path(r["path"]).name for r in rows(out, "SELECT path FROM sources")}
    assert names == set(CLOTHO_TRAIN) | set(CLOTHO_TEST)
    for tar_path in out.glob("shards/*/*.tar"):
        with tarfile.open(tar_path) as tar:
            assert all(MEMBER.match(m) for m in tar.getnames()), tar.getnames()


def test_label_less_rows_in_manifests_shard_json_and_catalog(clotho_build):
    _, out, _ = clotho_build
    assert rows(out, "SELECT count(*) AS n FROM sources WHERE label IS NOT NULL")[0]["n"] == 0
    assert all(len(r["captions"]) == 5 for r in rows(out, "SELECT captions FROM sources"))
    labels = rows(out, "SELECT relation, labels FROM samples")
    assert labels and all(r["labels"] == [None] * (1 if r["relation"] == "single" else 2)
                          for r in labels)
    shard = sorted(out.glob("shards/b/train-*.tar"))[0]
    with tarfile.open(shard) as tar:
        meta = json.loads(tar.extractfile(sorted(n for n in tar.getnames() if n.endswith(".json"))[0]).read())
    assert all(r["labels"] == [None, None] for r in meta["samples"])
    import pyarrow.parquet as pq

    table = pq.read_table(out / "manifests" / "samples.parquet")
    assert table.column("labels").to_pylist()[0][0] is None


def test_composite_captions_join_the_clips_captions(clotho_build):
    _, out, _ = clotho_build
    captions = {r["source_id"]: [clean_caption(c) for c in r["captions"]]
                for r in rows(out, "SELECT source_id, captions FROM sources")}
    groups: dict[str, dict] = {}
    for r in rows(out, "SELECT * FROM samples"):
        groups.setdefault(r["group_key"], {})[r["relation"]] = r
    assert len(groups) == 2 * 10  # groups_per_clip 1: as many groups as clips, per stage
    for g in groups.values():
        if "single" in g:
            (a,) = g["single"]["source_ids"]
            assert g["single"]["caption"] in captions[a] and g["single"]["template_ids"] == ["cap.caption"]
            a_text = g["single"]["caption"]
            b = g["double"]["source_ids"][1]
            first, second = g["double"]["caption"].split(", and ", 1)
            assert first == a_text and second in {c[0].lower() + c[1:] for c in captions[b]}
            continue
        a, b = g["forward"]["source_ids"]
        assert g["reversed"]["source_ids"] == [b, a]
        fa, fb = g["forward"]["caption"].split(", followed by ")
        ra, rb = g["reversed"]["caption"].split(", followed by ")
        oa, ob = g["overlay"]["caption"].split(", while ")
        assert fa in captions[a] and fb[0].upper() + fb[1:] in captions[b]
        # one caption per clip and group: every member names each clip the same way
        assert (ra.lower(), rb.lower()) == (fb.lower(), fa.lower()) and (oa, ob) == (fa, fb)
        assert g["forward"]["template_ids"] == ["cap.followed_by"]


def test_captions_vary_across_groups_with_the_group_seed(clotho_build):
    _, out, _ = clotho_build
    used = rows(out, "SELECT count(DISTINCT caption) AS n FROM samples WHERE relation = 'single'")
    # 10 clips x 5 captions: a fixed first caption would give at most 10 singles' captions
    assert used[0]["n"] >= 8
    drawn = {r["caption"] for r in rows(out, "SELECT caption FROM samples WHERE relation = 'single'")}
    assert any("(take" in c for c in drawn)  # not always the first caption


def test_plain_webdataset_reads_captioned_shards(clotho_build):
    wds = pytest.importorskip("webdataset")
    _, out, _ = clotho_build
    urls = [str(p) for p in sorted(out.glob("shards/b/*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 10
    for s in samples:
        assert {"forward.flac", "reversed.flac", "overlay.flac", "json"} <= set(s)
        meta = json.loads(s["json"])
        assert meta["dataset"] == "clotho" and meta["group_key"] == s["__key__"]
        audio, sr = sf.read(io.BytesIO(s["forward.flac"]))
        assert sr == SR and len(audio) == 2 * SR


def test_captioned_member_re_renders_bit_for_bit(clotho_build):
    _, out, _ = clotho_build
    (row,) = rows(out, "SELECT key FROM samples WHERE relation = 'forward' ORDER BY key LIMIT 1")
    assert rerender(out, row["key"]).match


def test_info_and_query_on_a_captioned_catalog(clotho_build):
    _, out, _ = clotho_build
    runner = CliRunner()
    info = runner.invoke(main, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "clotho" in info.output and "missing audio" in info.output
    q = runner.invoke(main, ["query", "SELECT count(*) AS n FROM samples WHERE labels[1] IS NULL",
                             "--data", str(out)])
    assert q.exit_code == 0 and "50" in q.output, q.output


def test_zste_refuses_a_captioned_only_catalog(clotho_build):
    from teminal.evaluate.testset import CatalogTestSet

    _, out, _ = clotho_build
    with pytest.raises(ValueError, match="no class labels; ZSTE needs a labelled dataset"):
        CatalogTestSet(out, split="test")


def test_clotho_through_the_command_line(tmp_path, clotho_build):
    root = clotho_build[0]
    result = CliRunner().invoke(main, [
        "build", "--dataset", "clotho", "--root", str(root), "--out", str(tmp_path / "out"),
        "--stages", "b", "--splits", "train=development;test=evaluation", "--sample-rate", str(SR),
        "--clip-seconds", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "missing audio: 1" in result.output and "sources  10 clips" in result.output
    assert "note" not in result.output  # val was not asked for


# ---------------------------------------------------------------------------------------------
# AudioCaps layout

def test_audiocaps_builds_from_the_audio_it_has(tmp_path, audiocaps_root):
    summary = build(tmp_path / "out", audiocaps_root, "audiocaps", stages=("b",))
    # train: 4 of 6 clips; val: 1 of 2 (skipped); test: named in a form the defaults miss
    assert summary.catalog and summary.clips == 4
    assert summary.rejects == {"missing audio": 2 + 1 + 3, "unpaired": 1}
    assert "split val: 1 usable clip(s), a pair needs 2; skipped" in summary.notes
    assert any(n.startswith("split test: no usable clip") for n in summary.notes)
    out = tmp_path / "out"
    names = {Path(r["path"]).name for r in rows(out, "SELECT path FROM sources")}
    assert names == {"-0Gj8-vB1q4_30.wav", "_a_b-c_0.wav", "xYz123_12.5.wav", "-Q9_100.wav"}
    plan = rows(out, "SELECT * FROM rejects WHERE phase = 'plan'")
    assert [Path(r["path"]).name for r in plan] == ["val-only_5.wav"]
    missing = rows(out, "SELECT path FROM rejects WHERE reason = 'missing audio' ORDER BY path")
    assert any(Path(r["path"]).name == "missing1_10.*" for r in missing)
    # sources are 10 s; composites are COMPOSE's 2 s, parts cut to their 1 s slots
    offs = rows(out, "SELECT source_offsets FROM samples WHERE relation = 'forward'")
    assert all(0 <= o <= 9.0 for r in offs for o in r["source_offsets"])


def test_audiocaps_name_template_reaches_the_reader(tmp_path, audiocaps_root):
    summary = build(tmp_path / "out", audiocaps_root, "audiocaps", stages=("a",),
                    name_template="yt={youtube_id}@{start_time}.{ext}")
    assert summary.clips == 4 + 3
    out = tmp_path / "out"
    assert rows(out, "SELECT count(*) AS n FROM sources WHERE split = 'test'")[0]["n"] == 3
    config = json.loads(rows(out, "SELECT config FROM builds")[0]["config"])
    assert config["name_template"] == "yt={youtube_id}@{start_time}.{ext}"
    test_caps = rows(out, "SELECT captions FROM sources WHERE split = 'test'")
    assert all(len(r["captions"]) == 5 for r in test_caps)


def test_name_template_is_refused_for_esc50(tmp_path):
    with pytest.raises(ValueError, match="--name-template applies to audiocaps, clotho"):
        BuildConfig(out=str(tmp_path), dataset="esc50", name_template="{x}.wav")


def test_no_usable_audio_is_a_clear_error(tmp_path):
    root = tmp_path / "ac"
    root.mkdir()
    (root / "train.csv").write_text("audiocap_id,youtube_id,start_time,caption\n1,abc,0,A dog\n")
    with pytest.raises(ValueError, match=r"no usable clip .*missing audio 1.*pipeline download audiocaps"):
        build(tmp_path / "out", root, "audiocaps")
    result = CliRunner().invoke(main, ["build", "--dataset", "audiocaps", "--root", str(root),
                                       "--out", str(tmp_path / "out2"), "--no-progress"])
    assert result.exit_code != 0 and "missing audio" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# Pairing rules and the cut of long parts

def clip(sid, split="train", label=None, captions=()):
    return SourceClip(source_id=sid, dataset="t", path=f"/x/{sid}.wav", split=split,
                      label=label, captions=tuple(captions))


def test_pairable_clips_leaves_out_clips_without_a_partner_and_tiny_splits():
    from teminal.pipeline.sources.captioned import distinct_captions

    clips = [clip("a", captions=["A dog barks"]), clip("b", captions=["A dog barks loudly"]),
             clip("c", captions=["A car passes by"]),
             clip("d", captions=["A car passes by as a dog barks"]),
             clip("e", "test", captions=["Rain"])]
    kept, rejects, notes = pairable_clips(clips, distinct_captions)
    # d's caption holds both events: a near-duplicate of every other clip
    assert [c.source_id for c in kept] == ["a", "b", "c"]
    assert {Path(r.path).stem: r.phase for r in rejects} == {"d": "plan", "e": "plan"}
    assert any("split test" in n and "skipped" in n for n in notes)
    labelled = [clip("x", label="dog"), clip("y", label="dog")]
    kept, rejects, _ = pairable_clips(labelled, lambda a, b: a.label != b.label)
    assert kept == [] and len(rejects) == 2


def test_a_long_part_keeps_its_loud_burst():
    """A 20 s source with a loud burst at 12-13 s, cut to a 5 s slot, keeps the burst."""
    sr = 1000
    rng = np.random.default_rng(0)
    long = (0.01 * rng.standard_normal(20 * sr)).astype(np.float32)
    long[12 * sr:13 * sr] += np.sin(2 * np.pi * 50 * np.arange(sr) / sr).astype(np.float32)
    short = (0.1 * rng.standard_normal(5 * sr)).astype(np.float32)
    a = clip("long", captions=["A loud bang in a quiet room"])
    b = clip("short", captions=["Wind blows"])
    config = ComposeConfig(sample_rate=sr, clip_seconds=10.0, key_prefix="t")
    recipes = {r.relation: r for r in make_group_recipes("b", "train", 0, a, b, config, seed=0)}
    fwd = render_detailed(recipes["forward"], {"long": long, "short": short})
    cut = fwd.source_offsets[0]
    assert cut <= 12.0 and cut + 5.0 >= 13.0
    slot = fwd.audio[:5 * sr]
    burst_at = cut + np.argmax(np.abs(slot)) / sr
    assert 12.0 <= burst_at < 13.0
    over = render_detailed(recipes["overlay"], {"long": long, "short": short})
    assert over.source_offsets[0] <= 12.0 <= over.source_offsets[0] + 10.0 - 1.0


# ---------------------------------------------------------------------------------------------
# Several datasets in one catalog

@pytest.fixture(scope="module")
def merged(tmp_path_factory, esc50_build, clotho_build):
    out = tmp_path_factory.mktemp("merged") / "all"
    summary = merge_catalogs([esc50_build[0], clotho_build[1]], out, log=lambda m: None)
    return out, summary


def test_merged_catalog_mixes_datasets_in_sql(merged, esc50_build, clotho_build):
    out, summary = merged
    assert summary.datasets == ["esc50", "clotho"] and summary.builds == 2
    assert summary.links == {"hard": summary.shards}  # same file system: no extra bytes
    per = {r["dataset"]: r["n"] for r in rows(out, "SELECT dataset, count(*) AS n FROM samples GROUP BY ALL")}
    esc_n = rows(esc50_build[0], "SELECT count(*) AS n FROM samples")[0]["n"]
    assert per == {"esc50-synthetic": esc_n, "clotho": 50}
    # one query over both: labels where there are labels, captions where there are not
    mixed = rows(out, """
        SELECT s.dataset, count(*) AS n,
               count(*) FILTER (WHERE src.label IS NULL AND len(src.captions) = 5) AS captioned
        FROM samples s JOIN sources src ON src.source_id = s.source_ids[1]
        WHERE s.relation = 'forward' GROUP BY ALL ORDER BY ALL""")
    assert [(r["dataset"], r["captioned"] == r["n"]) for r in mixed] == \
        [("clotho", True), ("esc50-synthetic", False)]
    synthetic = {r["build_id"]: r["synthetic"] for r in rows(out, "SELECT build_id, synthetic FROM builds")}
    assert sorted(synthetic.values()) == [False, True]


def test_merged_shards_are_valid_paths_under_the_merged_folder(merged):
    wds = pytest.importorskip("webdataset")
    out, _ = merged
    for r in rows(out, "SELECT path, bytes FROM shards"):
        assert (out / r["path"]).is_file() and (out / r["path"]).stat().st_size == r["bytes"]
    assert rows(out, "SELECT count(*) AS n FROM samples s LEFT JOIN shards h ON h.path = s.shard "
                     "WHERE h.path IS NULL")[0]["n"] == 0
    # trainers glob shards/<stage>/<split>-*.tar: both datasets are found
    train = sorted(p.name for p in out.glob("shards/b/train-*.tar"))
    assert any("-clotho-" in n for n in train) and any("-esc50-" in n for n in train)
    groups = list(wds.WebDataset([str(out / "shards" / "b" / n) for n in train], shardshuffle=False))
    assert {json.loads(g["json"])["dataset"] for g in groups} == {"clotho", "esc50-synthetic"}
    key = rows(out, "SELECT key FROM samples WHERE dataset = 'clotho' ORDER BY key LIMIT 1")[0]["key"]
    assert rerender(out, key).match


def test_merge_refusals_and_rerun(tmp_path, merged, esc50_build, clotho_build):
    out, _ = merged
    with pytest.raises(ValueError, match="two builds of one dataset"):
        merge_catalogs([esc50_build[0], out], tmp_path / "twice", log=lambda m: None)
    with pytest.raises(FileExistsError, match="holds a pipeline build"):
        merge_catalogs([clotho_build[1]], esc50_build[0], log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="no finished catalog"):
        merge_catalogs([tmp_path], tmp_path / "m", log=lambda m: None)
    other_rate = tmp_path / "clotho16k"
    build(other_rate, clotho_build[0], "clotho", stages=("a",),
          compose=ComposeConfig(sample_rate=16000, clip_seconds=2.0))
    with pytest.raises(ValueError, match="rendered differently"):
        merge_catalogs([esc50_build[0], other_rate], tmp_path / "m2", log=lambda m: None)
    again = merge_catalogs([esc50_build[0], clotho_build[1]], out, link="symlink", log=lambda m: None)
    assert again.links == {"symlink": again.shards}
    assert all(p.is_symlink() for p in out.glob("shards/*/*.tar"))
    assert merged_shard_path("shards/b/train-000003.tar", "train", "clotho") == "shards/b/train-clotho-000003.tar"
    assert merged_shard_path("shards/b/train-clotho-000003.tar", "train", "clotho") == "shards/b/train-clotho-000003.tar"


def test_catalog_merge_command_line(tmp_path, esc50_build, clotho_build):
    runner = CliRunner()
    merged_out = tmp_path / "all"
    result = runner.invoke(main, ["catalog", "--merge", str(esc50_build[0]), str(clotho_build[1]),
                                  "--out", str(merged_out), "--link", "copy"])
    assert result.exit_code == 0, result.output
    assert "merged 2 catalogs (esc50, clotho)" in result.output
    q = runner.invoke(main, ["query", "SELECT dataset, count(*) AS n FROM sources GROUP BY ALL ORDER BY ALL",
                             "--data", str(merged_out)])
    assert q.exit_code == 0 and "clotho" in q.output and "esc50-synthetic" in q.output
    info = runner.invoke(main, ["info", str(merged_out)])
    assert info.exit_code == 0 and info.output.count("build ") >= 2
    usage = runner.invoke(main, ["catalog", str(esc50_build[0]), str(clotho_build[1])])
    assert usage.exit_code != 0 and "--merge" in usage.output
    rebuilt = runner.invoke(main, ["catalog", str(merged_out)])
    assert rebuilt.exit_code != 0 and "merged catalog" in rebuilt.output


# ---------------------------------------------------------------------------------------------
# Real Clotho clips

@pytest.mark.realdata
def test_real_clotho_clips_build_at_16k(tmp_path, shared_data):
    root = shared_data / "clotho"
    if not (root / "clotho_audio_files" / "evaluation").is_dir():
        pytest.skip(f"the real Clotho clips are absent from {root}")
    out = tmp_path / "out"
    summary = build(out, root, "clotho", shard_size=100,
                    compose=ComposeConfig(sample_rate=16000, clip_seconds=10.0))
    assert summary.catalog and summary.clips == 7
    assert summary.rejects == {"missing audio": 2893 + 1045 - 7}
    src = rows(out, "SELECT * FROM sources")
    assert all(r["split"] == "test" and 15.0 <= r["duration"] <= 31.0 and len(r["captions"]) == 5
               for r in src)
    assert rows(out, "SELECT count(*) AS n FROM samples")[0]["n"] == 7 * 2 + 7 * 3
    (row,) = rows(out, "SELECT key FROM samples WHERE relation = 'overlay' ORDER BY key LIMIT 1")
    result = rerender(out, row["key"])
    assert result.match and result.audio.shape == (160000,)


# ---------------------------------------------------------------------------------------------
# `pipeline download`

def test_download_is_registered_and_its_help_reads_well():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert "download" in top.output
    result = runner.invoke(main, ["download", "--help"])
    assert result.exit_code == 0, result.output
    for word in ("NAME", "DEST", "--url", "--sha256", "--keep-archives", "esc50", "clotho",
                 "audiocaps-captions"):
        assert word in result.output


def test_download_audiocaps_prints_how_to_get_the_audio(tmp_path):
    result = CliRunner().invoke(main, ["download", "audiocaps", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "cannot be downloaded in bulk" in result.output
    assert f"pipeline build --dataset audiocaps --root {tmp_path}" in result.output
    assert not any(tmp_path.iterdir())  # nothing fetched, nothing written
