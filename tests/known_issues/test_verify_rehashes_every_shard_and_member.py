"""Issue 9.5 (and the OUT / render cases of 9.9): same-size corruption was never caught —
`pipeline info` never looks at the files and a rebuild trusted a finished shard whose size
matched. `pipeline verify OUT [--rerender N]` re-hashes every shard and member against the
catalog and exits non-zero listing every problem; a rebuild re-checks finished shards' sha256."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from teminal.pipeline.cli import main
from teminal.pipeline.render import shard_done
from teminal.pipeline.verify import verify_build


@pytest.fixture()
def data(tiny_data, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def shard(data, stage="b", i=0) -> Path:
    return sorted((data / "shards" / stage).glob("train-*.tar"))[i]


def flip_member(path: Path, suffix=".forward.flac", at=0.5):
    with tarfile.open(path) as tar:
        info = next(i for i in tar if i.name.endswith(suffix))
    raw = bytearray(path.read_bytes())
    raw[info.offset_data + int(info.size * at)] ^= 0x01
    path.write_bytes(bytes(raw))


def verify(data, *args):
    return CliRunner().invoke(main, ["verify", str(data), *args])


def test_a_clean_build_verifies(tiny_data):
    result = verify(tiny_data)
    assert result.exit_code == 0 and "OK" in result.output, result.output


def drop_member(path: Path):
    with tarfile.open(path) as tar:
        members = [(i, tar.extractfile(i).read()) for i in tar if i.isfile()]
    victim = next(i.name for i, _ in members if i.name.endswith(".overlay.flac"))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            if info.name != victim:
                import io

                tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("damage,expected", [
    (lambda p: flip_member(p), "sha256 differs from the catalog"),
    (lambda p: flip_member(p, ".reversed.flac", 0.01), "member .*reversed.flac sha256 differs"),
    (lambda p: p.unlink(), "missing"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "bytes, the catalog says"),
    (lambda p: p.write_bytes(b"\0" * p.stat().st_size), "sha256 differs"),
    (drop_member, "no member for catalog row"),
])
def test_each_kind_of_damage_is_listed_and_exits_non_zero(data, damage, expected):
    victim = shard(data)
    damage(victim)
    result = verify(data)
    assert result.exit_code == 1, result.output
    assert victim.relative_to(data).as_posix() in result.output
    import re

    assert re.search(expected, result.output), result.output


def test_a_stray_shard_not_in_the_catalog_is_listed(data):
    shutil.copy(shard(data), data / "shards" / "b" / "train-999999.tar")
    report = verify_build(data)
    assert not report.ok and any("train-999999.tar: shard file not in the catalog" in p
                                 for p in report.problems)


def test_every_problem_is_listed_not_only_the_first(data):
    for i in range(3):
        flip_member(shard(data, i=i))
    assert len(verify_build(data).problems) >= 6  # each shard's hash and its member


def test_rerender_compares_recipes_with_the_sources(data, tiny_data):
    result = verify(data, "--rerender", "3")
    assert result.exit_code == 0 and "3 recipes re-rendered" in result.output, result.output


def test_rerender_notices_a_changed_source(data, tiny_data, tmp_path):
    import numpy as np
    import soundfile as sf

    src = Path(shutil.copytree(tiny_data.parent / "src", tmp_path / "moved-src"))
    for wav in (src / "audio").glob("*.wav"):  # every source changes: any sample notices
        x, sr = sf.read(wav)
        sf.write(wav, np.clip(x * 1.5, -1, 1), sr, subtype="PCM_16")
    result = verify(data, "--rerender", "2", "--root", str(src))
    assert result.exit_code == 1 and "re-render" in result.output, result.output


def test_a_rebuild_rechecks_finished_shards_by_hash(data):
    victim = shard(data)
    frag = data / "manifests" / "parts" / "b" / f"{victim.stem}.json"
    build_id = json.loads(frag.read_text())["build_id"]

    class Task:
        relpath = victim.relative_to(data).as_posix()
        fragment = frag.relative_to(data).as_posix()

    assert shard_done(data, Task, build_id) is not None
    flip_member(victim)  # same size
    assert shard_done(data, Task, build_id) is None  # so the rebuild re-renders it


def test_render_after_the_dataset_moved_says_pass_root(data, tiny_data, tmp_path):
    key = "esc50synth-b-train-000000.forward"
    import duckdb

    con = duckdb.connect(str(data / "manifests" / "catalog.duckdb"), read_only=True)
    key = con.execute("SELECT key FROM samples WHERE stage = 'b' ORDER BY key LIMIT 1").fetchone()[0]
    con.close()
    src = tiny_data.parent / "src"
    moved = tmp_path / "elsewhere"
    shutil.copytree(src, moved)
    # the build's sources are only "gone" for this check: point the catalog's paths away
    result = CliRunner().invoke(main, ["render", key, "--data", str(data), "--root",
                                       str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "does not hold it either" in result.output, result.output
    ok = CliRunner().invoke(main, ["render", key, "--data", str(data), "--root", str(moved)])
    assert ok.exit_code == 0 and "match" in ok.output, ok.output


@pytest.mark.parametrize("below", ["", "below", "a/b"])
def test_an_out_that_cannot_be_a_folder_is_one_message(tiny_data, tmp_path, below):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / below if below else tmp_path / "file"
    result = CliRunner().invoke(main, ["build", "--root", str(tiny_data.parent / "src"),
                                       "--out", str(out), "--no-progress"])
    assert result.exit_code != 0 and "is a file" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   OSError(30, "Read-only file system")])
def test_an_unwritable_out_is_one_message(tiny_data, tmp_path, monkeypatch, error):
    # (root ignores permission bits, so the refusal of the file system is simulated)
    real = Path.write_bytes

    def refuse(self, data):
        if self.name.startswith(".write-test-"):
            raise error
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    result = CliRunner().invoke(main, ["build", "--root", str(tiny_data.parent / "src"),
                                       "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1 and "--out" in result.output and "Traceback" not in result.output
    assert "not writable" in result.output or "cannot be written" in result.output
