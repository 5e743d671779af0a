"""Timing of compositions (issue 25): where the second event starts (`--junction`), silence
between the events (`--gap`), a late second sound in overlays (`--overlay-start`).

The default is the paper's midpoint, and a default build must stay byte-identical to one made
before timing existed, so paper-protocol figures stay comparable."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from teminal.manifests.catalog import read_table
from teminal.pipeline.build import run_build
from teminal.pipeline.compose import ComposeConfig
from teminal.pipeline.config import BuildConfig

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
