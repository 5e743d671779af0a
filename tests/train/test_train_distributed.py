"""Two gloo ranks on CPU through `accelerate launch`: global negatives are exact, ranks end
with identical weights after the same number of steps."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
LAUNCH = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]


GLOO_TEARDOWN = "terminate called without an active exception"


def accelerate_launch(script: Path, args: list[str], cwd: Path, timeout: int = 240):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    for attempt in range(2):
        port = str(random.randint(20000, 40000))
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *LAUNCH,
               "--main_process_port", port, str(script), *args]
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
        # Known gloo teardown race (pytorch/pytorch#28126): a rank still blocked in a gloo
        # receive thread when its peer exits aborts with this message after the work is done.
        # About 1 launch in 8 here; retry that exact failure once, never any other.
        if proc.returncode == 0 or GLOO_TEARDOWN not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow
def test_gathered_negatives_give_the_full_batch_gradient(tmp_path):
    accelerate_launch(HERE / "launch_toy.py", ["gather", str(tmp_path)], tmp_path)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"gather{rank}.json").read_text()) == \
            {"layout": True, "grads": True}


@pytest.mark.slow
def test_two_ranks_see_the_global_batch_and_stay_identical(tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = accelerate_launch(HERE / "launch_toy.py", [
        "--data", str(tiny_data), "--out", str(out), "--max-steps", "6",
        "--groups-per-batch", "2", "--num-workers", "2", "--save-every", "3",
        "--no-tensorboard", "--no-progress", "--lr", "3e-3"], tmp_path)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for info in ranks:
        assert info["world"] == 2 and info["steps"] == 6 and info["loss_calls"] == 6
        # 2 groups x 3 relations per rank; the loss sees both ranks' rows
        assert info["sizes"] == [[12, 4]] * 6
    # the loader is kept out of accelerator.prepare: each rank reads its own half of an epoch
    epoch0 = []
    for r in (0, 1):
        batches = [json.loads(ln) for ln in (out / f"batches{r}.jsonl").read_text().splitlines()]
        epoch0.append({k for b in batches if b["epoch"] == 0 for k in b["keys"]})
    assert len(epoch0[0]) == len(epoch0[1]) == 12 and not epoch0[0] & epoch0[1]
    w0, w1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    for name in w0:
        torch.testing.assert_close(w0[name], w1[name], rtol=0, atol=0, msg=name)
    final = json.loads((out / "final" / "config.json").read_text())["extra"]
    assert final["world_size"] == 2
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows][-1] == 6
    assert "toy_b: steps 0->6" in proc.stdout
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3", "step-6"]
