"""Issue 26.3 and 26.4: a build did not remember its settings. Stage B on a build without
stage-B shards suggested `pipeline build --stages b --out ...`, which failed as printed ("esc50
data not found"), and with --root added failed again ("holds build ..., made with other
settings"); and a build into a finished OUT with another --seed decoded every source, wrote a
new decode cache into OUT/.cache and rewrote the lock file before it refused.

Now OUT/manifests/parts/build.json's settings apply wherever an option is not given, so
`--out` (+ what changes) extends or rebuilds a build; an option that would make another build
is refused naming it, from the record and the sources' scan, before OUT is touched or anything
is decoded: the refused OUT is byte for byte and mtime for mtime what it was."""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from teminal.pipeline.cli import main

# A tiny stage-A build at 16 kHz, 1 s samples: the settings the record must carry over
FIRST = ["--dataset", "esc50", "--stages", "a", "--sample-rate", "16000", "--clip-seconds", "1",
         "--shard-size", "4", "--groups", "train=4,val=2,test=2", "--seed", "3",
         "--template-set", "extended", "--junction", "0.4,0.6"]


def pipeline(*args: str):
    result = CliRunner().invoke(main, [*args, *(["--no-progress"] if args[0] == "build" else [])])
    return result


@pytest.fixture(scope="module")
def first_build(tmp_path_factory, small_source):
    """(the dataset folder, a finished stage-A build of it made with FIRST); copy before use."""
    tmp = tmp_path_factory.mktemp("remembers")
    root = tmp / "src"
    shutil.copytree(small_source, root)
    result = pipeline("build", "--root", str(root), "--out", str(tmp / "out"), *FIRST)
    assert result.exit_code == 0, result.output
    return root, tmp / "out"


@pytest.fixture()
def build(first_build, tmp_path):
    """A copy of the first build (mtimes kept) whose record names a copy of its sources."""
    root, out = first_build
    shutil.copytree(root, tmp_path / "src")
    shutil.copytree(out, tmp_path / "out")
    record = tmp_path / "out" / "manifests" / "parts" / "build.json"
    text = record.read_text().replace(json.dumps(str(root.resolve()))[1:-1],
                                      json.dumps(str((tmp_path / "src").resolve()))[1:-1])
    record.write_text(text)
    return tmp_path / "src", tmp_path / "out"


def recorded(out: Path) -> dict:
    return json.loads((out / "manifests" / "parts" / "build.json").read_text())


def tree(out: Path) -> dict:
    """Every path under OUT (OUT included) -> (its bytes' sha256 or "dir", mtime in ns)."""
    state = {".": ("dir", out.stat().st_mtime_ns)}
    for path in sorted(out.rglob("*")):
        kind = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        state[str(path.relative_to(out))] = (kind, path.stat().st_mtime_ns)
    return state


def commands_in(text: str) -> list[list[str]]:
    return [shlex.split(c)[1:] for c in re.findall(r"`(pipeline [^`]*)`", text)]


def test_extending_a_build_with_a_stage_takes_only_out_and_the_stages(build):
    root, out = build
    before = recorded(out)["config"]
    result = pipeline("build", "--out", str(out), "--stages", "a,b")
    assert result.exit_code == 0, result.output
    after = recorded(out)["config"]
    assert after["stages"] == ["a", "b"]
    assert {k: v for k, v in after.items() if k != "stages"} == \
        {k: v for k, v in before.items() if k != "stages"}   # root, rate, seed, timing ... kept
    assert after["compose"]["sample_rate"] == 16000 and after["seed"] == 3
    assert after["compose"]["junction"] == [0.4, 0.6] and after["root"] == str(root.resolve())
    shards = {p.parent.name for p in (out / "shards").rglob("*.tar")}
    assert shards == {"a", "b"}


def test_rebuilding_takes_only_out_and_keeps_the_build(build):
    _, out = build
    build_id = recorded(out)["build_id"]
    result = pipeline("build", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert recorded(out)["build_id"] == build_id and "already done" in result.output


def test_options_given_win_over_the_record():
    from teminal.pipeline.build_options import build_config

    values = main.commands["build"].make_context("build", ["--out", "O", "--seed", "5"]).params
    values.pop("no_progress")
    record = {"dataset": "esc50", "root": "/data/R", "stages": ["a"], "seed": 3,
              "compose": {"sample_rate": 16000, "clip_seconds": 1.0}, "codec": "pcm"}
    config = build_config(values, {"out", "seed"}, record)
    assert (config.seed, config.root, config.stages, config.codec) == (5, "/data/R", ("a",), "pcm")
    assert config.compose.sample_rate == 16000 and config.compose.clip_seconds == 1.0
    assert config.workers == 1   # how a run goes is never taken from the record


@pytest.mark.parametrize("flags,option", [
    (["--seed", "4"], "--seed 3 -> 4"),
    (["--sample-rate", "48000"], "--sample-rate 16000 -> 48000"),
    (["--junction", "0.5"], "--junction 0.4,0.6 -> 0.5"),
    (["--stages", "b"], "--stages a -> b"),
    (["--groups", "test=2,train=5,val=2"], "--groups test=2,train=4,val=2 -> test=2,train=5,val=2"),
])
def test_a_change_that_makes_another_build_is_refused_naming_the_option(build, flags, option):
    _, out = build
    result = pipeline("build", "--out", str(out), *flags)
    assert result.exit_code == 1 and option in result.output, result.output
    assert "Traceback" not in result.output
    replace, beside = commands_in(result.output)[:2]
    assert replace == ["build", "--out", str(out), *flags, "--overwrite"]
    assert beside[:2] == ["build", "--out"] and beside[2] == f"{out}-2"


def test_dropping_a_stage_is_refused_with_the_command_that_adds_it(build):
    _, out = build
    result = pipeline("build", "--out", str(out), "--stages", "b")
    add = commands_in(result.output)[-1]
    assert add == ["build", "--out", str(out), "--stages", "a,b"]


@pytest.mark.parametrize("old,new,refused,extends", [
    ({"splits": {"train": [1, 2], "test": [5]}}, {"splits": {"train": [1, 2], "test": [5],
                                                             "val": [4]}}, [], ["--splits"]),
    ({"splits": {"train": [1, 2], "test": [5]}}, {"splits": {"train": [1], "test": [5]}},
     ["--splits"], []),
    ({"groups": {"train": 6, "val": 2, "test": 0}}, {"groups": {"train": 6, "val": 2, "test": 2}},
     [], ["--groups"]),
    ({"groups": {"train": 6, "val": 2, "test": 2}}, {"groups": {"train": 6, "val": 2, "test": 3}},
     ["--groups"], []),
    ({"stages": ["a"]}, {"stages": ["a", "b"]}, [], ["--stages"]),
    ({"stages": ["a", "b"]}, {"stages": ["a"]}, ["--stages"], []),
    ({"codec": "flac"}, {"codec": "pcm"}, ["--codec"], []),
])
def test_only_added_stages_and_splits_extend_a_build(old, new, refused, extends):
    from teminal.pipeline.build_options import record_changes
    from teminal.pipeline.config import BuildConfig

    def config(changes: dict) -> BuildConfig:
        kw = {k: (tuple(v) if k == "stages" else v) for k, v in changes.items()}
        return BuildConfig(out="O", **kw)

    changes = record_changes(config(old).identity(), config(new))
    assert [c.split()[0] for c in changes.refused] == refused
    assert [c.split()[0] for c in changes.extends] == extends


def test_another_seed_is_refused_before_decoding_and_leaves_out_untouched(build, monkeypatch):
    from teminal.pipeline import build as build_module

    _, out = build
    (out / ".cache").mkdir()   # a kept decode cache must stay as it is too
    before = tree(out)
    decoded = []
    monkeypatch.setattr(build_module, "decode_pool", lambda *a, **k: decoded.append(a))
    result = pipeline("build", "--out", str(out), "--seed", "4")
    assert result.exit_code == 1 and "--seed 3 -> 4" in result.output
    assert decoded == [] and tree(out) == before


@pytest.mark.parametrize("change", ["added", "edited"])
def test_changed_sources_are_refused_before_decoding_and_leave_out_untouched(build, monkeypatch,
                                                                             change):
    from teminal.pipeline import build as build_module

    root, out = build
    csv = root / "meta" / "esc50.csv"
    rows = csv.read_text().splitlines()
    name = rows[1].split(",")[0]
    if change == "added":   # one more clip of the first row's class and fold
        shutil.copy(root / "audio" / name, root / "audio" / f"9{name}")
        csv.write_text("\n".join(rows + [f"9{rows[1]}"]) + "\n")
    else:                   # the same file name and length, other samples
        data = bytearray((root / "audio" / name).read_bytes())
        data[-2:] = bytes([data[-2] ^ 1, data[-1]])
        (root / "audio" / name).write_bytes(bytes(data))
    before = tree(out)
    monkeypatch.setattr(build_module, "decode_pool", lambda *a, **k: pytest.fail("decoded"))
    result = pipeline("build", "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "other sources" in result.output and ("new" if change == "added" else "changed") \
        in result.output
    assert tree(out) == before
