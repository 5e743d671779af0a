"""The trainer's --audio-head on the pretrained families (tiny random weights): stage A adds the
order-aware head (moment_contrast) to an hf and an msclap model and trains it, stage B continues
from stage A's export with the head, and every export reloads with the head it trained."""
from __future__ import annotations

import json

import pytest
import torch

from teminal.models import load_model
from teminal.models.heads import HeadSpec

COMMON = ["--max-steps", "2", "--groups-per-batch", "2", "--num-workers", "0",
          "--mixed-precision", "no", "--cpu", "--no-tensorboard", "--no-progress",
          "--save-every", "0", "--log-every", "1"]


@pytest.fixture(params=["hf", "msclap-2023"])
def spec(request, tiny_hf_dir, tiny_msclap) -> str:
    if request.param == "hf":
        return f"hf:{tiny_hf_dir}"
    path, tok = tiny_msclap("2023")
    return f"msclap:{path}?version=2023&text={tok}"


def _head(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.audio_head.state_dict().items()}


def test_stage_a_then_b_train_the_moment_contrast_head(spec, tiny_data, tmp_path):
    from teminal.train import stage_a, stage_b

    a, b = tmp_path / "a", tmp_path / "b"
    assert stage_a.main(["--model", spec, "--data", str(tiny_data), "--out", str(a),
                         "--audio-head", "moment_contrast", *COMMON]) == 0
    after_a = load_model(str(a))
    assert after_a.config["audio_head"] == HeadSpec.parse("moment_contrast").to_dict()
    head_a = _head(after_a)
    assert head_a["moment.weight"].abs().sum() > 0  # zero-initialised, then trained
    assert stage_b.main(["--init", str(a), "--data", str(tiny_data), "--out", str(b),
                         *COMMON]) == 0
    after_b = load_model(str(b))
    assert after_b.config["audio_head"] == after_a.config["audio_head"]
    assert after_b.config["extra"]["stage"] == "stage_b"
    assert any(not torch.equal(v, head_a[k]) for k, v in _head(after_b).items())
    losses = [json.loads(x)["loss"] for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(loss == loss for loss in losses)
