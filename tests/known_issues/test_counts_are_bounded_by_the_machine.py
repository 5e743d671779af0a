"""Issue 23.9 (training and evaluation): the largest accepted worker count spawned every
process up front; `evaluate --workers` had no limit (1,466 processes in 52 s);
`--groups-per-batch 1000000000` was killed by the kernel; `--max-items -3` and `--batch-size 0`
were accepted. Worker counts are bounded by the CPUs (two per CPU, at least 8), a batch whose
audio alone would not fit in the available memory is refused before any work, and counts
that mean nothing are refused; every refusal is one message naming the option."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from teminal.pipeline import machine
from teminal.evaluate.workers import DecodePool, worker_limit
from teminal.testing import toy_factory
from teminal.train.run_config import TrainConfig
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import Stage, run
from toy_clap import reference_info_nce


def loss(audio, text, scale, n_groups, cfg, positives=None):
    return reference_info_nce(audio, text, scale)


STAGE = Stage("toy_b", "b", ("forward", "reversed", "overlay"), loss, canonical_caption)


def config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=1, groups_per_batch=2, num_workers=0,
                save_every=0, log_every=1, tensorboard=False, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("workers_asked", [819, 10**6, -1])
def test_training_loader_workers_are_bounded_by_the_cpus(tmp_path, workers_asked):
    with pytest.raises(ValueError, match=rf"num_workers \(--num-workers\) must be a whole number "
                                         rf">= 0 and <= {worker_limit()} .*CPU"):
        config(tmp_path, tmp_path / "run", num_workers=workers_asked).validate()


@pytest.mark.parametrize("groups,memory", [
    (500_000, None),       # the machine's real memory: hundreds of GB of audio
    (64, 2**20),           # a machine with 1 MB free
])
def test_a_batch_that_would_not_fit_in_memory_is_refused_before_any_work(
        tiny_data, tmp_path, monkeypatch, groups, memory):
    if memory is not None:
        monkeypatch.setattr(machine, "available_memory", lambda: memory)
    with pytest.raises(ValueError, match=rf"--groups-per-batch {groups}: the audio of .* clips "
                                         rf"of 32000 samples take about .* more than the .* of "
                                         rf"memory available; lower --groups-per-batch"):
        run(config(tiny_data, tmp_path / "run", groups_per_batch=groups), STAGE, toy_factory)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_absurd_batches_are_refused_by_their_range(tmp_path):
    with pytest.raises(ValueError, match=r"groups_per_batch \(--groups-per-batch\) must be .* "
                                         r"got 1000000000"):
        config(tmp_path, tmp_path / "run", groups_per_batch=10**9).validate()


@pytest.mark.parametrize("n", [worker_limit() + 1, 1466, -1])
def test_decode_pools_are_bounded_by_the_cpus(n):
    with pytest.raises(ValueError, match=rf"--workers must be 0 .* to {worker_limit()} .*got {n}"):
        DecodePool(n)


@pytest.mark.parametrize("args,option", [
    (["--workers", "1466"], "--workers"),
    (["--workers", "100000"], "--workers"),
    (["--max-items", "-3"], "--max-items"),
    (["--max-items", "0"], "--max-items"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-8"], "--batch-size"),
    (["--batch-size", "1000000000"], "--batch-size"),
    (["--seed", "-1"], "--seed"),
])
def test_evaluate_counts_are_one_message_naming_the_option(tiny_hf_dir, tmp_path, args, option):
    from teminal.evaluate.cli import main

    result = CliRunner().invoke(main, ["zste", "--model", f"hf:{tiny_hf_dir}", "--data",
                                       str(tmp_path), "--out", str(tmp_path / "r.json"), *args])
    assert result.exit_code == 2 and option in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "r.json").exists()


def test_retrieval_refuses_negative_max_items(tmp_path):
    from teminal.evaluate.cli import main

    result = CliRunner().invoke(main, ["retrieval", "--model", "small", "--dataset", "clotho",
                                       "--root", str(tmp_path), "--out", str(tmp_path / "r.json"),
                                       "--max-items", "-3"])
    assert result.exit_code == 2 and "--max-items" in result.output
