"""Issue 9.9 (models, training, evaluation): a corrupt model.safetensors was safetensors' own
error naming no file; `--model` naming a missing folder said "unknown model spec"; `evaluate
zste` said "build stage b" when stage b existed but had no test split; a training error printed
two tracebacks. Each is now one line naming the file and the fix."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from teminal.manifests.catalog import write_catalog
from teminal.models import ModelFilesNotFound, ModelSpecError, load_model
from teminal.models.adapter import WEIGHTS_FILE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint folder's two files; the weights are read (and fail) before any model is
    built, so a tiny real safetensors file stands in for the model's."""
    import torch
    from safetensors.torch import save_file

    from teminal.models.adapter import CONFIG_FILE
    from teminal.models.laion import CONFIG_DIR

    folder = tmp_path_factory.mktemp("ckpt") / "final"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text((CONFIG_DIR / "small-cnn6.json").read_text())
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(folder / WEIGHTS_FILE))
    return folder


def _copy(checkpoint, tmp_path):
    import shutil

    return shutil.copytree(checkpoint, tmp_path / "final")


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],                 # truncated
    lambda b: b"",                              # empty
    lambda b: b"\x00" * len(b),                 # zeroed, same size
    lambda b: b[:8] + b"{not json" + b[17:],    # header damaged
    lambda b: b"PK\x03\x04" + b[4:],            # another format's magic
])
def test_a_corrupt_safetensors_names_the_file_and_the_fix(checkpoint, tmp_path, damage):
    folder = _copy(checkpoint, tmp_path)
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelSpecError, match=rf"{weights} is not a readable safetensors file.*damaged"):
        load_model(str(folder))


@pytest.mark.parametrize("spec", ["runs/does-not-exist", "./nope", "nope/final", "~/no-such-run",
                                  "/definitely/not/here/final"])
def test_a_model_path_that_does_not_exist_is_named_as_a_missing_folder(spec):
    with pytest.raises(ModelFilesNotFound, match="no such folder") as e:
        load_model(spec)
    assert "unknown model spec" not in str(e.value)


def test_a_plain_file_given_as_model_is_called_a_file(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="is a file, not a checkpoint folder"):
        load_model(str(weights))


def test_a_bare_unknown_name_still_lists_the_known_specs():
    with pytest.raises(ModelSpecError, match="unknown model spec 'smal'"):
        load_model("smal")


@pytest.mark.parametrize("argv_extra,expected", [
    (["--model", "runs/missing-run"], "no such folder"),
    (["--data", "/no/such/build"], "no catalog"),
    (["--groups-per-batch", "0"], "groups_per_batch"),
    (["--config", "/no/such.yaml"], "does not exist"),
    (["--query-file", "/no/such.sql"], "--query-file /no/such.sql"),
])
def test_training_errors_are_one_line_without_traceback(tiny_data, tmp_path, capsys, argv_extra,
                                                        expected):
    from teminal.train import stage_b

    argv = ["--data", str(tiny_data), "--out", str(tmp_path / "run"), "--max-steps", "1",
            "--num-workers", "0", "--no-tensorboard", "--no-progress", *argv_extra]
    assert stage_b.main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expected in err and "Traceback" not in err


def test_a_broken_yaml_config_is_one_message(tmp_path, capsys):
    from teminal.train import stage_b

    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\nseed: :")
    assert stage_b.main(["--config", str(bad), "--data", "x", "--out", "y"]) == 2
    err = capsys.readouterr().err
    assert f"{bad} is not a readable YAML file" in err and "Traceback" not in err


def test_a_loader_worker_error_keeps_only_the_original_message():
    from teminal.train.trainer import _one_message

    wrapped = ValueError("Caught CorruptShard in DataLoader worker process 0.\nOriginal "
                         "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                         "teminal.pipeline.shards.CorruptShard: /d/shards/b/train-000000.tar: "
                         "member g.forward.flac does not match")
    assert _one_message(wrapped) == ("/d/shards/b/train-000000.tar: member g.forward.flac does "
                                     "not match")


def _catalog(out, splits):
    sources = [{"source_id": f"s{i}", "dataset": "esc50", "path": f"/x/{i}.wav", "split": "train",
                "label": lab} for i, lab in enumerate(["dog", "cat"])]
    shards = [{"path": f"shards/b/{sp}-000000.tar", "stage": "b", "split": sp, "num_groups": 1}
              for sp in splits]
    write_catalog(out, {"sources": sources, "samples": [], "shards": shards, "rejects": [],
                        "builds": [{"build_id": "b1", "config": json.dumps({})}]})


@pytest.mark.parametrize("built,asked", [(["train"], "test"), (["train", "val"], "test"),
                                         (["train", "test"], "val")])
def test_zste_says_which_split_is_missing_when_stage_b_exists(tmp_path, built, asked):
    from teminal.evaluate.testset import CatalogTestSet

    _catalog(tmp_path, built)
    with pytest.raises(FileNotFoundError, match=rf"stage B was built for split\(s\) .* but has no "
                                                rf"'{asked}' split.*--split"):
        CatalogTestSet(tmp_path, split=asked)


def test_zste_without_any_stage_b_still_says_build_stage_b(tmp_path):
    from teminal.evaluate.testset import CatalogTestSet

    _catalog(tmp_path, [])
    with pytest.raises(FileNotFoundError, match="including stage b"):
        CatalogTestSet(tmp_path)


@pytest.mark.parametrize("spec", ["runs/none", "./missing-dir"])
def test_evaluate_names_a_missing_model_folder_in_one_line(tmp_path, spec):
    from teminal.evaluate.cli import main

    _catalog(tmp_path, ["train"])
    result = CliRunner().invoke(main, ["zste", "--model", spec, "--out", str(tmp_path / "r.json"),
                                       "--data", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and "no such folder" in result.output
    assert "Traceback" not in result.output


def test_evaluate_names_a_corrupt_checkpoint_in_one_line(checkpoint, tmp_path):
    from teminal.evaluate.cli import main

    folder = _copy(checkpoint, tmp_path)
    (folder / WEIGHTS_FILE).write_bytes(b"garbage")
    _catalog(tmp_path / "data", ["train"])
    result = CliRunner().invoke(main, ["zste", "--model", str(folder), "--out",
                                       str(tmp_path / "r.json"), "--data", str(tmp_path / "data"),
                                       "--quiet"])
    assert result.exit_code == 1 and "not a readable safetensors file" in result.output
