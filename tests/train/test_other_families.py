"""Stage B through the same trainer for the pretrained families (tiny random weights): the
default TeminAL subset trains and nothing else moves, provenance is recorded, and the export
reloads (for hf: with plain transformers too)."""
from __future__ import annotations

import json

import torch

from teminal.models import load_model

COMMON = ["--max-steps", "2", "--groups-per-batch", "2", "--num-workers", "0",
          "--mixed-precision", "no", "--cpu", "--no-tensorboard", "--no-progress",
          "--save-every", "0", "--log-every", "1"]


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_hf_stage_b_steps_train_the_default_subset_and_export_for_plain_transformers(
        tiny_data, tiny_hf_dir, tmp_path):
    from transformers import ClapModel

    from teminal.train import stage_b

    spec = f"hf:{tiny_hf_dir}"
    before = _state(load_model(spec).hf)
    run_dir = tmp_path / "b"
    assert stage_b.main(["--model", spec, "--data", str(tiny_data), "--out", str(run_dir),
                         *COMMON]) == 0
    after = load_model(str(run_dir))
    assert after.family == "hf"
    prov = after.config["extra"]
    assert prov["stage"] == "stage_b" and prov["init"] == spec and prov["steps"] == 2
    assert prov["build_id"] and prov["train_config"]["groups_per_batch"] == 2
    subset = set(after.config["trainable"])
    from teminal.models.trainable import select

    trained, _ = select(before, subset)
    moved = {k for k, v in _state(after.hf).items() if not torch.equal(v, before[k])}
    assert moved and moved <= trained, sorted(moved - trained)[:5]
    plain = ClapModel.from_pretrained(str(run_dir / "final" / "hf"), local_files_only=True)
    assert all(torch.equal(v, dict(plain.named_parameters())[k])
               for k, v in after.hf.named_parameters())
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(m["loss"] == m["loss"] for m in metrics)


def test_lr_mult_patterns_match_the_names_trainable_patterns_match(tiny_hf_dir, tiny_msclap):
    from teminal.train.trainer import param_groups

    path, tok = tiny_msclap("2023")
    for spec in (f"hf:{tiny_hf_dir}", f"msclap:{path}?version=2023&text={tok}"):
        model = load_model(spec)
        model.set_trainable(None)
        first = next(n for n in model.trainable_names() if "logit_scale" not in n)
        groups = param_groups(model, 1.0, [f"{first}=0.5"])
        assert sorted(g["lr_mult"] for g in groups) == [0.5, 1.0], spec
        assert [len(g["params"]) for g in groups if g["lr_mult"] == 0.5] == [1], spec


def test_msclap_stage_b_steps_train_only_the_default_subset(tiny_data, tiny_msclap, tmp_path):
    from teminal.train import stage_b

    path, tok = tiny_msclap("2023")
    spec = f"msclap:{path}?version=2023&text={tok}"
    before = _state(load_model(spec).clap)
    run_dir = tmp_path / "b"
    assert stage_b.main(["--model", spec, "--data", str(tiny_data), "--out", str(run_dir),
                         *COMMON]) == 0
    after = load_model(str(run_dir))
    assert after.family == "msclap" and after.config["extra"]["stage"] == "stage_b"
    from teminal.models.trainable import select

    trained, _ = select(before, after.config["trainable"])
    moved = {k for k, v in _state(after.clap).items() if not torch.equal(v, before[k])}
    assert moved and moved <= trained, sorted(moved - trained)[:5]
