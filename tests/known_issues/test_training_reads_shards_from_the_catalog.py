"""Issue 9.4 (and the shard cases of 9.5 / 9.9): training found shards by file-name pattern, so
a deleted shard silently left it training on fewer groups (50 of 60); a truncated shard was a
`tarfile.ReadError` traceback and a byte-flipped member flowed into training. The stream now
takes its shard list from the catalog, stops naming every unusable shard (or, with
--skip-missing-shards, trains on the rest and counts what it left out), and checks every
member against its sha256."""
from __future__ import annotations

import json
import shutil
import tarfile
from itertools import islice
from pathlib import Path

import pytest

from teminal.pipeline.shards import CorruptShard, iter_groups
from teminal.train.run_config import TrainConfig
from teminal.train.streaming import (GroupStream, ShardIndex, StreamPlan, canonical_caption,
                                     make_loader)
from teminal.train.trainer import Stage, run
from teminal.testing import toy_factory
from toy_clap import reference_info_nce

RELATIONS = ("forward", "reversed", "overlay")
STAGE = Stage("toy_b", "b", RELATIONS,
              lambda a, t, s, n, cfg, positives=None: reference_info_nce(a, t, s), canonical_caption)


@pytest.fixture()
def data(tiny_data, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def shards(data) -> list[Path]:
    return sorted((data / "shards" / "b").glob("train-*.tar"))


def config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=2, groups_per_batch=2, num_workers=0,
                save_every=0, log_every=1, tensorboard=False, progress=False)
    return TrainConfig(**{**base, **kw})


def first_member_offset(path: Path, suffix: str) -> tuple[int, int]:
    with tarfile.open(path) as tar:
        info = next(i for i in tar if i.name.endswith(suffix))
        return info.offset_data, info.size


def truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def empty(p: Path):
    p.write_bytes(b"")


def garbage_same_size(p: Path):
    p.write_bytes(b"\x07" * p.stat().st_size)


def swap_with_another_shard(p: Path):
    other = sorted(p.parent.glob("train-*.tar"))[-1]
    p.write_bytes(other.read_bytes())


def a_directory(p: Path):
    p.unlink()
    p.mkdir()


@pytest.mark.parametrize("damage", [Path.unlink, truncate, empty, garbage_same_size,
                                    swap_with_another_shard, a_directory])
def test_an_unusable_catalog_shard_stops_training_naming_it(data, tmp_path, damage):
    victim = shards(data)[0]
    damage(victim)
    with pytest.raises(FileNotFoundError, match="--skip-missing-shards") as e:
        run(config(data, tmp_path / "run"), STAGE, toy_factory)
    assert str(victim) in str(e.value)
    assert not (tmp_path / "run" / "final").exists()


def test_every_missing_shard_is_named(data, tmp_path):
    gone = shards(data)[:3]
    for p in gone:
        p.unlink()
    with pytest.raises(FileNotFoundError, match="3 shard") as e:
        ShardIndex.build(data, "b")
    assert all(str(p) in str(e.value) for p in gone)


def test_skip_missing_shards_trains_on_the_rest_and_counts_them(data, tmp_path):
    groups = ShardIndex.build(data, "b").num_groups
    shards(data)[1].unlink()
    index = ShardIndex.build(data, "b", skip_missing=True)
    assert index.num_groups == groups - 4 and index.skipped_groups == 4 and len(index.skipped) == 1
    out = tmp_path / "run"
    run(config(data, out, skip_missing_shards=True), STAGE, toy_factory)
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["skipped_shards"] == 1 and r["skipped_groups"] == 4 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_shards"] == 1 and summary["skipped_groups"] == 4


def test_a_stray_tar_not_in_the_catalog_is_never_read(data):
    before = ShardIndex.build(data, "b")
    shutil.copy(shards(data)[0], data / "shards" / "b" / "train-999999.tar")
    after = ShardIndex.build(data, "b")
    assert after.shards == before.shards and after.num_groups == before.num_groups


def test_training_without_a_catalog_says_so(data, tmp_path):
    (data / "manifests" / "catalog.duckdb").unlink()
    with pytest.raises(FileNotFoundError, match="no catalog.*shard list from the catalog"):
        ShardIndex.build(data, "b")


def _flip(path: Path, suffix: str, at: float):
    offset, size = first_member_offset(path, suffix)
    raw = bytearray(path.read_bytes())
    pos = offset + int(size * at)
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("suffix,at", [(".forward.flac", 0.5), (".overlay.flac", 0.99),
                                       (".reversed.flac", 0.01)])
def test_a_byte_flipped_member_stops_the_stream_naming_member_and_shard(data, suffix, at):
    victim = shards(data)[0]
    _flip(victim, suffix, at)
    index = ShardIndex.build(data, "b")  # same size, same headers: only the stream can tell
    stream = GroupStream(StreamPlan(index, 0, 0, 1, 0), RELATIONS, 24, canonical_caption)
    with pytest.raises(CorruptShard, match=rf"{victim}.*{suffix[1:]}.*sha256.*pipeline verify"):
        list(islice(iter(make_loader(stream)), 1))


def test_iter_groups_checks_members_and_names_a_truncated_shard(data):
    victim = shards(data)[0]
    _flip(victim, ".forward.flac", 0.5)
    with pytest.raises(CorruptShard, match=f"{victim}.*forward.flac"):
        list(iter_groups([victim]))
    other = shards(data)[1]
    truncate(other)
    with pytest.raises(CorruptShard, match=f"{other}: unreadable shard"):
        list(iter_groups([other]))


def test_pcm_members_are_checked_too(tmp_path):
    from tiny_build import build_tiny_data

    data = build_tiny_data(tmp_path, classes=2, per_fold=1, codec="pcm", seconds=1.0)
    victim = sorted((data / "shards" / "a").glob("train-*.tar"))[0]
    _flip(victim, ".single.npy", 0.9)
    with pytest.raises(CorruptShard, match="single.npy.*sha256"):
        list(iter_groups([victim]))
