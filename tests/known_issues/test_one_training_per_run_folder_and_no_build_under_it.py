"""Issue 23.8: two trainings into one --out both exited 0 with interleaved metrics, a final/
from one and a summary from the other; `pipeline build --overwrite` while a training streamed
the same OUT mixed two builds in one run. A training now holds an exclusive lock on its run
folder (a second one refuses at once, naming the holder's pid) and a shared lock on the build
it reads (OUT/.build-lock.readers): a build into that OUT refuses while a training (or an
evaluation) reads it, and a training refuses while a build writes it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from build_helpers import quick_build
from teminal.testing import toy_factory
from teminal.pipeline import lock
from teminal.pipeline.lock import build_lock, read_lock, run_lock
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


@pytest.fixture(autouse=True)
def quick_probes(monkeypatch):
    monkeypatch.setattr(lock, "PROBES", 2)  # a refusing build waits 2 x 50 ms, not 1 s


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_training_into_the_same_out_refuses_naming_the_holder(tiny_data, tmp_path,
                                                                       resume):
    out = tmp_path / "run"
    out.mkdir()
    with run_lock(out):
        with pytest.raises(FileExistsError, match=rf"in use by another training right now \(pid "
                                                  rf"{os.getpid()} on "):
            run(config(tiny_data, out, resume=resume), STAGE, toy_factory)
    assert not (out / "metrics.jsonl").exists() and not (out / "final").exists()
    run(config(tiny_data, out), STAGE, toy_factory)  # released: the run goes ahead


def test_a_training_in_another_process_holds_its_run_folder(tiny_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from pathlib import Path; "
         "from teminal.pipeline.lock import run_lock\n"
         f"with run_lock(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match=rf"pid {holder.pid}"):
            run(config(tiny_data, out), STAGE, toy_factory)
    finally:
        holder.kill()
        holder.wait()
    run(config(tiny_data, out), STAGE, toy_factory)  # the dead holder's lock is gone


@pytest.fixture
def built(small_source, tmp_path):
    out = tmp_path / "data"
    quick_build(small_source, out)
    return out


@pytest.mark.parametrize("build", [
    dict(overwrite=True, seed=5),      # replace it with another build
    dict(),                            # the same build again (rewrites its catalog)
    dict(part=(1, 2), overwrite=True), # one part of another build
])
def test_a_build_into_an_out_that_a_training_reads_refuses(small_source, built, build):
    before = sorted(p.name for p in (built / "shards" / "b").iterdir())
    with read_lock(built):
        with read_lock(built, "an evaluation"):  # several readers share it
            with pytest.raises(FileExistsError, match=rf"being read right now by a training or "
                                                      rf"an evaluation \(pid {os.getpid()}\)"):
                quick_build(small_source, built, **build)
    assert sorted(p.name for p in (built / "shards" / "b").iterdir()) == before
    quick_build(small_source, built, overwrite=True, seed=5)  # no reader: the build goes ahead


@pytest.mark.parametrize("part", [(0, 1), (0, 2), (1, 3)])
def test_a_training_refuses_to_read_an_out_being_built(tiny_data, tmp_path, part):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    with build_lock(data, part):
        with pytest.raises(FileExistsError, match=rf"{data} is being built right now \(pid "
                                                  rf"{os.getpid()} .* a training cannot read it"):
            run(config(data, tmp_path / "run"), STAGE, toy_factory)


def test_a_training_holds_the_shared_lock_for_its_whole_run(tiny_data, tmp_path, monkeypatch):
    """While the training runs, a build into its data refuses (checked from inside a step)."""
    data = shutil.copytree(tiny_data, tmp_path / "data")
    seen = []

    def loss_that_checks(audio, text, scale, n_groups, cfg, positives=None):
        try:
            lock.refuse_while_read(data)
            seen.append("not held")
        except FileExistsError:
            seen.append("held")
        return reference_info_nce(audio, text, scale)

    run(config(data, tmp_path / "run", max_steps=2), Stage(
        "toy_b", "b", ("forward", "reversed", "overlay"), loss_that_checks, canonical_caption),
        toy_factory)
    assert seen == ["held", "held"]
    lock.refuse_while_read(data)  # released at the end


def test_a_read_only_build_folder_is_read_without_a_lock(tmp_path, monkeypatch):
    import errno

    real_open = os.open

    def read_only_fs(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_fs)
    with read_lock(tmp_path) as held:
        assert held is None
