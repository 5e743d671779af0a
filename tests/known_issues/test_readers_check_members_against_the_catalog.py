"""Issue 23.3 and 23.4: the evaluator decoded test shards without checking a member (a replaced
or byte-flipped test shard was scored, exit 0), and training checked members against the JSON
inside the same tar, so a same-size shard from another build (another seed, the same keys)
trained a whole epoch and a catalog of another build over these shards trained and evaluated,
its provenance naming the wrong build. Every reader now goes through the shard codec
(teminal.manifests.shard_codec): each member against the sha256 the CATALOG records for it, and
each group's build against the build the catalog lists for its shard, refused in one line that
names the shard and the member (or group)."""
from __future__ import annotations

import io
import shutil
import tarfile
from itertools import islice
from pathlib import Path

import pytest
from click.testing import CliRunner

from teminal.manifests.shard_codec import CorruptShard
from teminal.testing import RandomModel
from teminal.train.streaming import (GroupStream, ShardIndex, StreamPlan, canonical_caption,
                                     make_loader)

RELATIONS = ("forward", "reversed", "overlay")


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[int, Path]:
    """Two builds of the same sources and settings but the seed (pcm members, so the shards of
    both have the same sizes and the same group keys): read-only, copy them."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    root = tmp_path_factory.mktemp("src")
    src = write_synthetic_esc50(root / "src", clips_per_class_per_fold=2, classes=CLASS_NAMES[:4])
    out = {}
    for seed in (0, 1):
        out[seed] = root / f"seed{seed}"
        run_build(BuildConfig(out=str(out[seed]), root=str(src), shard_size=4, codec="pcm",
                              seed=seed, compose=ComposeConfig(sample_rate=4000, clip_seconds=1.0)),
                  progress=False, log=lambda *_: None)
    return out


@pytest.fixture()
def data(builds, tmp_path) -> Path:
    return Path(shutil.copytree(builds[0], tmp_path / "data"))


def same_size_shard(builds, stage: str, split: str) -> tuple[Path, Path]:
    """(a shard of build 0, the shard of build 1 at the same path and of the same size)."""
    for mine in sorted((builds[0] / "shards" / stage).glob(f"{split}-*.tar")):
        theirs = builds[1] / mine.relative_to(builds[0])
        if theirs.is_file() and theirs.stat().st_size == mine.stat().st_size:
            return mine, theirs
    raise AssertionError("no same-size shard in the two builds")


def _rewrite(path: Path, suffix: str, change) -> str:
    """Rewrite the tar with its first member ending in `suffix` replaced by `change(data,
    others)` (others: the bytes of the shard's other members of that suffix); returns the
    member's name."""
    with tarfile.open(path) as tar:
        members = [(i, tar.extractfile(i).read()) for i in tar if i.isfile()]
    victim = next(i.name for i, _ in members if i.name.endswith(suffix))
    others = [d for i, d in members if i.name.endswith(suffix) and i.name != victim]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(change(data, others) if info.name == victim else data))
    return victim


def flip_byte(at: float):
    def change(data: bytes, others) -> bytes:
        raw = bytearray(data)
        raw[min(len(raw) - 1, int(len(raw) * at))] ^= 0xFF
        return bytes(raw)
    return change


def another_groups(data: bytes, others) -> bytes:
    """The same relation's member of another group of the shard: well formed, the same size,
    only not this one."""
    return next(d for d in others if d != data)


MEMBER_DAMAGE = {   # (member suffix, change)
    "byte flip in the forward audio": (".forward.npy", flip_byte(0.5)),
    "byte flip at the end of the overlay": (".overlay.npy", flip_byte(0.999)),
    "byte flip in the npy header of reversed": (".reversed.npy", flip_byte(0.02)),
    "a member replaced by another group's": (".reversed.npy", another_groups),
}


# -- evaluation (issue 23.3) ----------------------------------------------------------------------

def evaluate(data: Path, tmp_path: Path, monkeypatch, workers: int = 0):
    from teminal.evaluate import cli

    model = RandomModel(vocab=["a", "b"], sample_rate=4000, clip_samples=4000)
    monkeypatch.setattr(cli, "_load_model", lambda spec, device, seed: model)
    return CliRunner().invoke(cli.main, ["zste", "--model", "small", "--data", str(data),
                                         "--out", str(tmp_path / "r.json"), "--quiet",
                                         "--workers", str(workers)])


def refused_in_one_line(result, *names):
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert result.exit_code != 0 and len(errors) == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert all(name in errors[0] for name in names), result.output
    return errors[0]


def test_a_sound_test_split_still_evaluates(data, tmp_path, monkeypatch):
    result = evaluate(data, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("damage", list(MEMBER_DAMAGE))
def test_a_damaged_test_member_is_refused_naming_shard_and_member(data, tmp_path, monkeypatch,
                                                                    damage):
    victim = sorted((data / "shards" / "b").glob("test-*.tar"))[0]
    member = _rewrite(victim, *MEMBER_DAMAGE[damage])
    line = refused_in_one_line(evaluate(data, tmp_path, monkeypatch), str(victim), member)
    assert "sha256" in line and "pipeline verify" in line
    assert not (tmp_path / "r.json").exists()


def test_a_damaged_member_is_refused_when_workers_decode_too(data, tmp_path, monkeypatch):
    victim = sorted((data / "shards" / "b").glob("test-*.tar"))[-1]
    member = _rewrite(victim, ".overlay.npy", flip_byte(0.7))
    refused_in_one_line(evaluate(data, tmp_path, monkeypatch, workers=1), str(victim), member)


def test_a_test_shard_of_another_build_is_refused(builds, data, tmp_path, monkeypatch):
    mine, theirs = same_size_shard(builds, "b", "test")
    victim = data / mine.relative_to(builds[0])
    shutil.copy(theirs, victim)            # same path, same size, same group keys
    line = refused_in_one_line(evaluate(data, tmp_path, monkeypatch), str(victim))
    assert "different builds" in line


def test_a_catalog_of_another_build_over_these_shards_is_refused(builds, data, tmp_path,
                                                                 monkeypatch):
    shutil.rmtree(data / "manifests")
    shutil.copytree(builds[1] / "manifests", data / "manifests")
    line = refused_in_one_line(evaluate(data, tmp_path, monkeypatch), "shards/b/test-")
    assert "different builds" in line


def test_stage_a_singles_standing_in_are_checked_too(data):
    """When no source decodes, the stage-A singles of the test shards stand in: read through
    the same checks."""
    from teminal.evaluate.testset import CatalogTestSet

    testset = CatalogTestSet(data)
    testset._sources = [dict(r, path=str(data / "gone.wav")) for r in testset._sources]
    victim = sorted((data / "shards" / "a").glob("test-*.tar"))[0]
    _rewrite(victim, ".single.npy", flip_byte(0.5))
    with pytest.raises(CorruptShard, match=rf"{victim}.*single.npy.*sha256"):
        list(testset.singles())


# -- training (issue 23.4) ------------------------------------------------------------------------

def first_batch(data: Path):
    index = ShardIndex.build(data, "b")   # same sizes and keys: only the members can tell
    stream = GroupStream(StreamPlan(index, 0, 0, 1, 0), RELATIONS, 64, canonical_caption)
    return list(islice(iter(make_loader(stream)), 1))


def test_a_sound_build_still_streams(data):
    assert first_batch(data)


@pytest.mark.parametrize("damage", list(MEMBER_DAMAGE))
def test_a_damaged_train_member_stops_the_stream_naming_it(data, damage):
    victim = sorted((data / "shards" / "b").glob("train-*.tar"))[0]
    member = _rewrite(victim, *MEMBER_DAMAGE[damage])
    with pytest.raises(CorruptShard, match=rf"{victim}: member {member}.*sha256 in the catalog"):
        first_batch(data)


def test_a_same_size_train_shard_of_another_build_is_refused(builds, data):
    mine, theirs = same_size_shard(builds, "b", "train")
    victim = data / mine.relative_to(builds[0])
    shutil.copy(theirs, victim)
    with pytest.raises(CorruptShard, match=rf"{victim}: group .* different builds"):
        first_batch(data)


def test_a_catalog_of_another_build_over_these_train_shards_is_refused(builds, data):
    shutil.rmtree(data / "manifests")
    shutil.copytree(builds[1] / "manifests", data / "manifests")
    # a shard whose size differs is refused up front, a same-size one when it is read
    with pytest.raises((CorruptShard, FileNotFoundError),
                       match="different builds|the catalog says"):
        first_batch(data)


def test_training_stops_with_one_message_and_exports_nothing(builds, data, tmp_path):
    from teminal.train.run_config import TrainConfig
    from teminal.train.trainer import Stage, run
    from teminal.testing import toy_factory
    from toy_clap import reference_info_nce

    mine, theirs = same_size_shard(builds, "b", "train")
    shutil.copy(theirs, data / mine.relative_to(builds[0]))
    stage = Stage("toy_b", "b", RELATIONS, lambda a, t, s, n, cfg, positives=None:
                  reference_info_nce(a, t, s), canonical_caption)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), max_steps=40,
                      groups_per_batch=2, num_workers=0, save_every=0, log_every=1,
                      tensorboard=False, progress=False)
    with pytest.raises(CorruptShard, match="different builds"):
        run(cfg, stage, toy_factory)
    assert not (tmp_path / "run" / "final").exists()
