"""Deterministic tar shards: fixed metadata and order, atomic writes, plain webdataset reads."""
from __future__ import annotations

import hashlib
import tarfile

import numpy as np
import pytest

from teminal.manifests.shard_codec import encode_member
from teminal.manifests.vocabulary import member_name, shard_relpath
from teminal.pipeline.shards import iter_groups, iter_members, remove_temporaries, write_shard

SR = 16000


def groups(n: int = 3, codec: str = "flac"):
    rng = np.random.default_rng(0)
    out = []
    for g in range(n):
        key = f"esc50-b-train-{g:06d}"
        members = []
        for relation in ("forward", "reversed", "overlay"):
            data, ext = encode_member((0.1 * rng.standard_normal(SR)).astype(np.float32), SR, codec)
            members.append((member_name(key, relation, ext), data))
        meta = {"group_key": key, "stage": "b", "split": "train", "samples": [{"key": f"{key}.forward"}]}
        out.append((key, meta, members))
    return out


def test_same_groups_give_the_same_bytes(tmp_path):
    a = write_shard(tmp_path / "a.tar", groups())
    b = write_shard(tmp_path / "b.tar", groups())
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256((tmp_path / "a.tar").read_bytes()).hexdigest()
    assert a.bytes == (tmp_path / "a.tar").stat().st_size
    assert (a.num_groups, a.num_members) == (3, 9)


def test_members_have_fixed_metadata_sorted_names_and_no_pax_headers(tmp_path):
    path = tmp_path / "s.tar"
    write_shard(path, groups(2))
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names[:4] == ["esc50-b-train-000000.forward.flac", "esc50-b-train-000000.json",
                         "esc50-b-train-000000.overlay.flac", "esc50-b-train-000000.reversed.flac"]
    assert all(i.mtime == 0 and i.uid == 0 and i.gid == 0 and i.uname == "" and i.gname == ""
               and i.mode == 0o644 and i.pax_headers == {} for i in infos)
    assert b"PaxHeader" not in path.read_bytes()


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "shards" / "b" / "train-000000.tar"
    write_shard(path, groups(1))
    assert sorted(p.name for p in path.parent.iterdir()) == ["train-000000.tar"]
    with pytest.raises(ValueError, match="dot"):
        write_shard(tmp_path / "bad.tar", [("a.b", {}, [])])
    assert not (tmp_path / "bad.tar").exists()
    assert list(tmp_path.glob("bad.tar*")) == []


def test_unsorted_or_foreign_members_are_refused(tmp_path):
    g = groups(2)
    with pytest.raises(ValueError, match="sorted"):
        write_shard(tmp_path / "x.tar", [g[1], g[0]])
    key, meta, members = g[0]
    with pytest.raises(ValueError, match="does not belong"):
        write_shard(tmp_path / "x.tar", [(key, meta, [("other.forward.flac", b"x")])])


def test_remove_temporaries(tmp_path):
    (tmp_path / "b").mkdir()
    stale = tmp_path / "b" / "train-000001.tar.tmp-12345"
    stale.write_bytes(b"half a shard")
    keep = tmp_path / "b" / "train-000000.tar"
    keep.write_bytes(b"")
    assert remove_temporaries(tmp_path) == [stale]
    assert keep.exists() and not stale.exists()


@pytest.mark.parametrize("codec", ["flac", "pcm"])
def test_iter_groups_round_trips_meta_and_audio(tmp_path, codec):
    g = groups(2, codec)
    write_shard(tmp_path / "s.tar", g)
    got = list(iter_groups([tmp_path / "s.tar"]))
    assert [m["group_key"] for m, _ in got] == [k for k, _, _ in g]
    meta, waves = got[0]
    assert meta == g[0][1]
    assert set(waves) == {"forward", "reversed", "overlay"}
    assert all(w.dtype == np.float32 and w.shape == (SR,) for w in waves.values())
    keys = [k for k, _ in iter_members([tmp_path / "s.tar"])]
    assert keys == ["esc50-b-train-000000", "esc50-b-train-000001"]


@pytest.mark.filterwarnings("ignore:WebDataset\\(shardshuffle")
def test_plain_webdataset_reads_a_shard(tmp_path):
    wds = pytest.importorskip("webdataset")
    write_shard(tmp_path / "s.tar", groups(3))
    samples = list(wds.WebDataset(str(tmp_path / "s.tar")))
    assert [s["__key__"] for s in samples] == [f"esc50-b-train-{g:06d}" for g in range(3)]
    assert {"forward.flac", "reversed.flac", "overlay.flac", "json"} <= set(samples[0])


def test_shard_relpath():
    assert shard_relpath("b", "train", 12) == "shards/b/train-000012.tar"


def test_the_writer_hashes_each_member_into_its_row_and_the_shard_as_it_writes(tmp_path):
    from teminal.pipeline.shards import ShardWriter

    g = groups(2)
    for key, meta, members in g:
        meta["samples"] = [{"key": name.rsplit(".", 1)[0], "sha256": ""} for name, _ in members]
    with ShardWriter(tmp_path / "s.tar") as writer:
        for group in g:
            writer.add(*group)
    written = writer.close()
    assert written.sha256 == hashlib.sha256((tmp_path / "s.tar").read_bytes()).hexdigest()
    for key, meta, members in g:
        assert [r["sha256"] for r in meta["samples"]] == [hashlib.sha256(d).hexdigest()
                                                          for _, d in members]
    stored = {m["group_key"]: m for m, _ in iter_groups([tmp_path / "s.tar"])}
    assert stored[g[0][0]]["samples"] == g[0][1]["samples"]   # the JSON holds the hashes too


def test_a_failure_in_the_writer_thread_is_raised_and_leaves_no_file(tmp_path):
    from teminal.pipeline.shards import ShardWriter

    key, meta, members = groups(1)[0]
    writer = ShardWriter(tmp_path / "s.tar")
    writer.add(key, {"samples": [], "x": object()}, members)   # no JSON for it
    writer.add(*groups(2)[1])                                   # later groups are drained
    with pytest.raises(TypeError, match="JSON serializable"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_an_exception_while_rendering_removes_the_partial_shard(tmp_path):
    from teminal.pipeline.shards import ShardWriter

    with pytest.raises(RuntimeError, match="render failed"):
        with ShardWriter(tmp_path / "s.tar") as writer:
            writer.add(*groups(1)[0])
            raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []
