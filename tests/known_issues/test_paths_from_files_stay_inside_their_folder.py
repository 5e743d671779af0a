"""Issue 23.2: paths read from files were trusted. `pipeline catalog --merge` copied or linked
files outside --out from `..`, absolute paths and crafted split names in an input's manifests;
`pipeline synth` deleted files its manifest listed outside its folder and wrote through a
symlinked marker; a build truncated whatever OUT/.build-lock linked to. Every path read from a
manifest, catalog, recipe, marker or archive now goes through teminal.pipeline.paths: it must
stay inside its folder, nothing is written through a symlink, and a violation is refused naming
the file and the value."""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from build_helpers import quick_build
from teminal.manifests.catalog import read_table, write_catalog
from teminal.manifests.schema import TABLES
from teminal.pipeline.cli import main
from teminal.pipeline.lock import LOCK_FILE, build_lock, claim_lock
from teminal.pipeline.merge import merge_catalogs
from teminal.pipeline.paths import UnsafePath, inside, relative_parts, safe_name
from teminal.pipeline.sources import synth


@pytest.fixture(scope="module")
def built(small_source, tmp_path_factory) -> Path:
    """A finished stage-b build (9 shards); read-only: copy it."""
    out = tmp_path_factory.mktemp("built") / "out"
    quick_build(small_source, out)
    return out


@pytest.fixture()
def data(built, tmp_path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "in" / "data"))


def tables_of(out: Path) -> dict[str, list[dict]]:
    return {t: read_table(out / "manifests" / f"{t}.parquet") for t in TABLES}


def craft(out: Path, change) -> None:
    """Rewrite the build's Parquet manifests AND its catalog with `change(tables)` applied, as a
    hostile author would (consistent, so only the path checks can catch it)."""
    tables = tables_of(out)
    change(tables)
    write_catalog(out, tables)


def first_shard(out: Path) -> str:
    return tables_of(out)["shards"][0]["path"]


def rename_shard(tables, new: str) -> None:
    old = tables["shards"][0]["path"]
    tables["shards"][0]["path"] = new
    for row in tables["samples"]:
        if row["shard"] == old:
            row["shard"] = new


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# ---------------------------------------------------------------------------------------------
# the helper

@pytest.mark.parametrize("value", ["../x", "a/../../x", "/etc/passwd", "", ".", "a\0b",
                                   "C:/Windows", "..\\..\\x", None, 5])
def test_a_path_that_leaves_its_folder_is_refused_naming_file_and_value(tmp_path, value):
    with pytest.raises(UnsafePath, match=r"^manifest\.json: listed path"):
        inside(tmp_path, value, "manifest.json", what="listed path")


def test_a_symlink_leading_out_is_refused_for_reading_and_any_symlink_for_writing(tmp_path):
    (tmp_path / "outside.txt").write_text("x")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "in.txt").write_text("y")
    (folder / "out-link").symlink_to(tmp_path / "outside.txt")
    (folder / "in-link").symlink_to(folder / "sub" / "in.txt")
    (folder / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePath, match="outside"):
        inside(folder, "out-link", "m")
    with pytest.raises(UnsafePath, match="outside"):
        inside(folder, "dir-link/outside.txt", "m")
    assert inside(folder, "in-link", "m") == folder / "in-link"      # a read may stay inside
    for rel in ("in-link", "dir-link/new.txt", "out-link"):
        with pytest.raises(UnsafePath, match="symbolic link"):
            inside(folder, rel, "m", write=True)
    assert inside(folder, "sub/new.txt", "m", write=True) == folder / "sub" / "new.txt"
    assert relative_parts("shards/b/x.tar", "m").parts == ("shards", "b", "x.tar")


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "a.b", "", "x" * 65, None, "tr ain"])
def test_a_name_used_as_a_path_component_must_be_plain(name):
    with pytest.raises(UnsafePath, match="not a plain name"):
        safe_name(name, "shards.parquet", "split name")
    assert safe_name("train_2-b", "shards.parquet") == "train_2-b"


# ---------------------------------------------------------------------------------------------
# pipeline catalog --merge

def _absolute(tmp_path):
    def change(t):
        victim = tmp_path / "victim.tar"
        rename_shard(t, str(victim))
    return change


MERGE_CASES = {
    "dotdot shard path": (lambda tmp: lambda t: rename_shard(t, "shards/b/../../../victim.tar"),
                          "climbs out"),
    "absolute shard path": (_absolute, "is absolute"),
    "crafted split name": (lambda tmp: lambda t: t["shards"][0].update(split="../../../victim"),
                           "split name '../../../victim' is not a plain name"),
    "crafted stage": (lambda tmp: lambda t: t["shards"][0].update(stage="../b"),
                      "not shards/<stage>"),
    "path outside shards/": (lambda tmp: lambda t: rename_shard(t, "manifests/catalog.duckdb"),
                             "not shards/<stage>"),
    "sample naming an unlisted shard": (
        lambda tmp: lambda t: t["samples"][0].update(shard="../../../etc/passwd"),
        "which its shards table does not list"),
}


@pytest.mark.parametrize("case", list(MERGE_CASES))
def test_merge_refuses_crafted_shard_paths_and_names_before_writing(data, tmp_path, case):
    make, expected = MERGE_CASES[case]
    # the same bytes where a crafted path points, so only the path check can refuse it
    shutil.copy(data / first_shard(data), tmp_path / "victim.tar")
    craft(data, make(tmp_path))
    before = files_under(tmp_path)
    merged = tmp_path / "merged"
    with pytest.raises(ValueError, match=expected) as err:
        merge_catalogs([data], merged, log=lambda m: None)
    assert "parquet" in str(err.value)                     # names the file it read
    assert files_under(tmp_path) - before <= {"merged"}    # nothing written anywhere else
    assert not (merged / "shards").exists()


@pytest.mark.parametrize("link", ["shard file", "stage folder"])
def test_merge_refuses_a_symlinked_shard_leading_out_of_its_input(data, tmp_path, link):
    rel = first_shard(data)
    if link == "shard file":
        shutil.copy(data / rel, tmp_path / "elsewhere.tar")
        (data / rel).unlink()
        (data / rel).symlink_to(tmp_path / "elsewhere.tar")
    else:
        stage_dir = (data / rel).parent
        shutil.move(stage_dir, tmp_path / "elsewhere")
        stage_dir.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafePath, match=r"outside .*data"):
        merge_catalogs([data], tmp_path / "merged", log=lambda m: None)


def test_merge_refuses_an_out_whose_shards_folder_is_a_symlink(data, tmp_path):
    target = tmp_path / "system-folder"
    target.mkdir()
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "shards").symlink_to(target, target_is_directory=True)
    with pytest.raises(UnsafePath, match="shards is a symbolic link"):
        merge_catalogs([data], merged, log=lambda m: None)
    assert list(target.iterdir()) == []


def test_merge_of_a_clean_build_still_works_and_cli_refusals_are_one_line(data, tmp_path):
    summary = merge_catalogs([data], tmp_path / "ok", log=lambda m: None)
    assert summary.shards == 9
    craft(data, lambda t: rename_shard(t, "/etc/hostname"))
    result = CliRunner().invoke(main, ["catalog", "--merge", str(data), "--out",
                                       str(tmp_path / "m")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "'/etc/hostname' is absolute" in result.output and "shards.parquet" in result.output


# ---------------------------------------------------------------------------------------------
# pipeline synth

TWO = dict(clips_per_class_per_fold=1, classes=["siren", "low_hum"])


@pytest.mark.parametrize("listed", ["../victim.txt", "audio/../../victim.txt", "{victim}", ".",
                                    ""])
def test_synth_never_removes_a_listed_file_outside_its_folder(tmp_path, listed):
    out = tmp_path / "synth"
    synth.write_synthetic_esc50(out, **TWO)
    victim = tmp_path / "victim.txt"
    victim.write_text("user data")
    manifest = json.loads((out / synth.MANIFEST).read_text())
    manifest["files"][listed.format(victim=victim)] = None
    (out / synth.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FileExistsError, match="listed file .*Nothing was changed"):
        synth.write_synthetic_esc50(out, seed=1, replace=True, **TWO)
    assert victim.read_text() == "user data"


@pytest.mark.parametrize("name", ["SYNTHETIC.md", "SYNTHETIC.files.json", "meta/esc50.csv",
                                  "SYNTHETIC.files.json.tmp", "audio"])
def test_synth_never_writes_through_a_symlink_in_its_folder(tmp_path, name):
    out = tmp_path / "synth"
    synth.write_synthetic_esc50(out, **TWO)
    victim = tmp_path / "user-file"
    victim.mkdir() if name == "audio" else victim.write_text("user data")
    link = out / name
    shutil.rmtree(link) if link.is_dir() else link.unlink(missing_ok=True)
    link.symlink_to(victim, target_is_directory=victim.is_dir())
    with pytest.raises(FileExistsError, match=f"symbolic links \\({name}\\).*Nothing was changed"):
        synth.write_synthetic_esc50(out, **TWO)
    assert (victim.is_dir() and not list(victim.iterdir())) or victim.read_text() == "user data"


# ---------------------------------------------------------------------------------------------
# the build lock

@pytest.mark.parametrize("name,take", [(LOCK_FILE, lambda out: build_lock(out)),
                                       (f"{LOCK_FILE}.part-1-of-2", lambda out: build_lock(out, (1, 2))),
                                       (f"{LOCK_FILE}.claim", claim_lock)])
@pytest.mark.parametrize("dangling", [False, True])
def test_a_lock_file_that_is_a_symlink_is_refused_never_truncated(tmp_path, name, take, dangling):
    victim = tmp_path / "user-file"
    if not dangling:
        victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    with pytest.raises(UnsafePath, match=f"{name} is a symbolic link"):
        with take(out):
            pass
    assert victim.read_text() == "precious" if not dangling else not victim.exists()


def test_a_build_into_an_out_with_a_symlinked_lock_is_one_line(small_source, tmp_path):
    victim = tmp_path / "user-file"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(victim)
    result = CliRunner().invoke(main, ["build", "--root", str(small_source), "--out", str(out),
                                       "--no-progress"])
    assert result.exit_code == 1 and "is a symbolic link" in result.output
    assert "Traceback" not in result.output and victim.read_text() == "precious"


# ---------------------------------------------------------------------------------------------
# pipeline build --splits: split names become shard paths

@pytest.mark.parametrize("splits", ["../../esc=1,2,3,4,5", "a/b=1", "x.y=2", "tr ain=1"])
def test_a_split_name_that_is_not_a_plain_name_is_refused_before_any_work(small_source,
                                                                           tmp_path, splits):
    out = tmp_path / "deep" / "out"
    result = CliRunner().invoke(main, ["build", "--root", str(small_source), "--out", str(out),
                                       "--no-progress", "--splits", splits])
    assert result.exit_code != 0 and "--splits" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "deep").exists()


# ---------------------------------------------------------------------------------------------
# readers of a catalog: verify and render

@pytest.mark.parametrize("bad", ["../../victim.tar", "/etc/hostname", "link"])
def test_verify_reports_a_shard_path_leading_out_and_never_opens_it(data, tmp_path, bad):
    if bad == "link":
        shutil.copy(data / first_shard(data), tmp_path / "elsewhere.tar")
        (data / "shards" / "b" / "link").symlink_to(tmp_path / "elsewhere.tar")
        bad = "shards/b/link"
    craft(data, lambda t: rename_shard(t, bad))
    result = CliRunner().invoke(main, ["verify", str(data)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{bad}: refused" in result.output, result.output


@pytest.mark.parametrize("bad", ["../../victim.tar", "/etc/hostname"])
def test_render_refuses_a_shard_path_leading_out(data, bad):
    craft(data, lambda t: rename_shard(t, bad))
    key = next(r["key"] for r in tables_of(data)["samples"] if r["shard"] == bad)
    result = CliRunner().invoke(main, ["render", key, "--data", str(data)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"shard path {bad!r}" in result.output, result.output


def test_render_root_mapping_cannot_climb_out_of_the_new_root(data, tmp_path):
    tables = tables_of(data)
    root = json.loads(tables["builds"][0]["config"])["root"]
    sid = tables["samples"][0]["source_ids"][0]

    def climb(t):
        for row in t["sources"]:
            if row["source_id"] == sid:
                row["path"] = f"{root}/audio/../../../victim.wav"
    craft(data, climb)
    new_root = tmp_path / "moved"
    new_root.mkdir()
    result = CliRunner().invoke(main, ["render", tables["samples"][0]["key"], "--data",
                                       str(data), "--root", str(new_root)])
    assert result.exit_code == 1 and "climbs out" in result.output, result.output


# ---------------------------------------------------------------------------------------------
# pipeline download: archive members

def _zip_with_symlink(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo("data/escape")
        info.external_attr = (0o120777 << 16)         # a symlink entry
        z.writestr(info, "/etc")
        z.writestr("data/escape/passwd", "x")


def _7z_with_symlink(path: Path) -> None:
    py7zr = pytest.importorskip("py7zr")
    folder = path.parent / "7zsrc"
    folder.mkdir()
    (folder / "escape").symlink_to("/etc", target_is_directory=True)
    with py7zr.SevenZipFile(path, "w") as z:
        z.write(folder / "escape", "data/escape")


@pytest.mark.parametrize("kind,make", [("zip", _zip_with_symlink), ("7z", _7z_with_symlink)])
def test_download_refuses_an_archive_holding_a_symlink(tmp_path, kind, make):
    from teminal.pipeline import download as dl

    archive = tmp_path / f"a.{kind}"
    make(archive)
    with pytest.raises(dl.DownloadError, match="data/escape.*symbolic link"):
        dl.extract(archive, kind, tmp_path / "dest", scratch=tmp_path / "scratch")
    assert not (tmp_path / "dest").exists() and not (tmp_path / "scratch").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_download_refuses_an_archive_member_outside_the_folder(tmp_path, member):
    from teminal.pipeline import download as dl

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(member, "x")
    with pytest.raises(dl.DownloadError, match="outside the folder"):
        dl.extract(archive, "zip", tmp_path / "dest", scratch=tmp_path / "scratch")
    assert not list(tmp_path.rglob("evil.txt")) and os.listdir(tmp_path) == ["a.zip"]


# ---------------------------------------------------------------------------------------------
# pipeline catalog OUT: the build record's shard list

@pytest.mark.parametrize("bad", ["../outside.tar", "/etc/hostname", "shards/b/../../../x.tar"])
def test_catalog_refuses_a_build_record_listing_a_shard_outside_out(data, bad):
    record = data / "manifests" / "parts" / "build.json"
    build = json.loads(record.read_text())
    build["shards"][0] = bad
    record.write_text(json.dumps(build))
    result = CliRunner().invoke(main, ["catalog", str(data)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"build.json: shard path {bad!r}" in result.output


def test_catalog_takes_a_fragment_naming_another_shard_for_stale(data):
    first = first_shard(data)
    fragment = data / "manifests" / "parts" / "b" / (Path(first).stem + ".json")
    saved = json.loads(fragment.read_text())
    saved["shard"]["path"] = "../../elsewhere.tar"
    fragment.write_text(json.dumps(saved))
    result = CliRunner().invoke(main, ["catalog", str(data)])
    assert result.exit_code == 1 and f"first: {first}" in result.output, result.output
