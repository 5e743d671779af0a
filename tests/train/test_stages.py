"""The three stage scripts with the real small CLAP: they run from their folder (no shadowed
imports), and a few dozen steps on an easy synthetic set make each loss go down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_build import REPO, build_tiny_data

STAGES = ("pretrain", "stage_a", "stage_b")


@pytest.mark.parametrize("name", STAGES)
def test_scripts_start_from_their_own_folder(name):
    """`python train/<stage>.py` puts train/ first on sys.path: nothing there may shadow a
    package, and every flag of the interface exists."""
    proc = subprocess.run([sys.executable, f"train/{name}.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--model", "--data", "--out", "--config", "--max-steps", "--init", "--resume",
                 "--where", "--query-file", "--seed", "--groups-per-batch", "--lr",
                 "--save-every", "--log-every", "--alpha-same-time", "--alpha-cross-time",
                 "--alpha-same-overlap", "--alpha-cross-overlap", "--beta", "--lambda-a",
                 "--trainable", "--recipe"):
        assert flag in proc.stdout, flag


@pytest.fixture(scope="module")
def model_data(tmp_path_factory):
    """Shards at the small model's own input length and rate."""
    from teminal.models import load_model

    model = load_model("small")
    seconds = model.clip_samples / model.sample_rate
    if model.sample_rate != 16000:
        pytest.skip(f"the small model runs at {model.sample_rate} Hz, the fixture at 16 kHz")
    return build_tiny_data(tmp_path_factory.mktemp("small"), seconds=seconds)


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_each_stage_learns_with_the_small_model(model_data, tmp_path):
    from teminal.train import pretrain, stage_a, stage_b

    common = ["--data", str(model_data), "--max-steps", "20", "--log-every", "1",
              "--num-workers", "1", "--no-tensorboard", "--no-progress", "--save-every", "0"]
    base = tmp_path / "pretrain"
    assert pretrain.main([*common, "--out", str(base), "--groups-per-batch", "8",
                          "--lr", "1e-3"]) == 0
    a = tmp_path / "a"
    assert stage_a.main([*common, "--out", str(a), "--init", str(base),
                         "--groups-per-batch", "6"]) == 0
    b = tmp_path / "b"
    assert stage_b.main([*common, "--out", str(b), "--init", str(a),
                         "--groups-per-batch", "6"]) == 0
    for run_dir, stage in ((base, "pretrain"), (a, "stage_a"), (b, "stage_b")):
        losses = _losses(run_dir)
        assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, (stage, losses)
        final = json.loads((run_dir / "final" / "config.json").read_text())["extra"]
        assert final["stage"] == stage and final["build_id"]


@pytest.mark.slow
def test_accelerate_launch_runs_a_stage_script(model_data, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "train/stage_a.py",
         "--data", str(model_data), "--out", str(out), "--max-steps", "2",
         "--groups-per-batch", "2", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "stage_a: steps 0->2" in proc.stdout
    assert (out / "final" / "model.safetensors").exists()
    assert list((out / "tb").rglob("events.out.tfevents*"))
