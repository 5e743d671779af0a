"""Issue 23.10 (training and evaluation): a truncated catalog.duckdb or test shard was a
traceback in `evaluate`; a full disk while saving a checkpoint was a bare `[Errno 28]` and left
a half-written checkpoint folder; a torn last line of metrics.jsonl (a kill mid-write) blocked
`--resume`. Each is now one line naming the file and the fix, a failed save leaves the earlier
checkpoints usable, and a torn line is dropped on resume. (A pickled pytorch_model.bin under
hf: is test_model_and_state_files_never_run_pickled_code.py.)"""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from teminal.testing import toy_factory
from teminal.train.run_config import TrainConfig
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import Stage, complete_checkpoints, run
from toy_clap import reference_info_nce


def _evaluate(tiny_hf_dir, data, tmp_path):
    from teminal.evaluate.cli import main

    return CliRunner().invoke(main, ["zste", "--model", f"hf:{tiny_hf_dir}", "--data", str(data),
                                     "--out", str(tmp_path / "r.json"), "--quiet",
                                     "--workers", "0"])


def _one_line_error(result, *expected):
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "Traceback" not in result.output
    assert all(text in errors[0] for text in expected), result.output


@pytest.mark.parametrize("cut", [lambda n: n // 2, lambda n: n // 3, lambda n: 4096,
                                 lambda n: 0])
def test_evaluate_names_a_truncated_catalog(tiny_data, tiny_hf_dir, tmp_path, cut):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    catalog = data / "manifests" / "catalog.duckdb"
    catalog.write_bytes(catalog.read_bytes()[:cut(catalog.stat().st_size)])
    _one_line_error(_evaluate(tiny_hf_dir, data, tmp_path), str(catalog), "pipeline catalog")


@pytest.mark.parametrize("cut", [lambda n: n // 2, lambda n: n // 3, lambda n: 700,
                                 lambda n: 0])
def test_evaluate_names_a_truncated_test_shard(tiny_data, tiny_hf_dir, tmp_path, cut):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    shard = data / "shards" / "b" / "test-000000.tar"
    shard.write_bytes(shard.read_bytes()[:cut(shard.stat().st_size)])
    _one_line_error(_evaluate(tiny_hf_dir, data, tmp_path), str(shard), "unreadable shard",
                    "pipeline verify")


# Training

def loss(audio, text, scale, n_groups, cfg, positives=None):
    return reference_info_nce(audio, text, scale)


STAGE = Stage("toy_b", "b", ("forward", "reversed", "overlay"), loss, canonical_caption)


def config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=4, groups_per_batch=2, num_workers=0,
                save_every=2, log_every=1, tensorboard=False, progress=False, seed=1,
                average_from=1, average_every=1)
    return TrainConfig(**{**base, **kw})


def _disk_full_when(target: str, write):
    """`write`, except that writing a path containing `target` fails as on a full disk."""
    def fail(*args, **kwargs):
        paths = [str(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, Path))]
        if any(target in p for p in paths):
            raise OSError(errno.ENOSPC, "No space left on device", paths[0])
        return write(*args, **kwargs)

    return fail


@pytest.mark.parametrize("module,name", [
    ("accelerate.utils.other", "safe_save_file"),       # the model's weights
    ("torch", "save"),                                  # optimizer and RNG states
    ("teminal.train.run_state", "write_json_atomic"),   # the project's progress.json
    ("teminal.train.averaging", "save_average_state"),  # the weight average's sums
])
def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_the_last_one_stays(
        tiny_data, tmp_path, monkeypatch, module, name):
    import importlib

    target = importlib.import_module(module)
    real = getattr(target, name)
    monkeypatch.setattr(target, name, _disk_full_when("step-4", real))
    out = tmp_path / "run"
    with pytest.raises(OSError, match=r"cannot write .*step-4.* \(No space left on device; is "
                                      r"the disk full\?\); .*step-4 was not saved\. The last "
                                      r"complete checkpoint is .*step-2: free some space, then "
                                      r"rerun with --resume") as e:
        run(config(tiny_data, out), STAGE, toy_factory)
    assert "\n" not in str(e.value)
    assert [p.name for p in complete_checkpoints(out)] == ["step-2"]
    assert not (out / "checkpoints" / "step-4").exists() and not (out / "final").exists()
    monkeypatch.setattr(target, name, real)
    assert run(config(tiny_data, out, resume=True), STAGE, toy_factory).steps == 4


def test_a_full_disk_while_exporting_keeps_the_checkpoints_and_names_final(tiny_data, tmp_path,
                                                                          monkeypatch):
    import safetensors.torch

    real = safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", _disk_full_when("final", real))
    out = tmp_path / "run"
    with pytest.raises(OSError, match=rf"cannot write .*final.* {out / 'final'} was not saved"):
        run(config(tiny_data, out), STAGE, toy_factory)
    assert not (out / "final").exists() and not (out / "final.partial").exists()
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    run(config(tiny_data, out, resume=True), STAGE, toy_factory)
    assert (out / "final" / "model.safetensors").exists()


@pytest.mark.parametrize("torn", [
    b'{"step": 3, "loss": 1.2',        # half a JSON object, no newline
    b"\x00" * 37,                       # a block of zeros after a crash
    b'{"step": 3, "lo\xff\xfe',         # cut inside a line, invalid UTF-8 after it
])
def test_a_torn_last_metrics_line_does_not_block_resume(tiny_data, tmp_path, torn):
    out = tmp_path / "run"
    run(config(tiny_data, out, max_steps=2), STAGE, toy_factory)
    with open(out / "metrics.jsonl", "ab") as f:
        f.write(torn)
    result = run(config(tiny_data, out, resume=True, max_steps=4), STAGE, toy_factory)
    assert result.steps == 4
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_training_with_a_truncated_catalog_is_one_line(tiny_data, tmp_path, capsys):
    from teminal.train import stage_b

    data = shutil.copytree(tiny_data, tmp_path / "data")
    catalog = data / "manifests" / "catalog.duckdb"
    catalog.write_bytes(catalog.read_bytes()[: catalog.stat().st_size // 2])
    argv = ["--data", str(data), "--out", str(tmp_path / "run"), "--max-steps", "1",
            "--num-workers", "0", "--no-tensorboard", "--no-progress"]
    assert stage_b.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "catalog" in err and str(data) in err

