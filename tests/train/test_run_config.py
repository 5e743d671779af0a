"""Settings: defaults < YAML < flags, unknown keys refused, the right default file per model."""
from __future__ import annotations

import json

import pytest
import yaml

from teminal.train.run_config import (CONFIG_DIR, TrainConfig, default_config_path,
                                      model_family, resolve)

REQUIRED = ["--data", "D", "--out", "R"]


def test_shipped_configs_load_and_follow_the_paper_for_laion():
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        TrainConfig.from_dict(yaml.safe_load(path.read_text()), source=path.name)
    a = yaml.safe_load((CONFIG_DIR / "laion_stage_a.yaml").read_text())
    b = yaml.safe_load((CONFIG_DIR / "laion_stage_b.yaml").read_text())
    for cfg in (a, b):
        assert (cfg["lr"], cfg["lr_gamma"], cfg["grad_clip"], cfg["mixed_precision"]) == \
            (1e-3, 0.95, 0.5, "bf16")
    assert (a["groups_per_batch"], a["lambda_a"], a["epochs"]) == (4, 0.8, 20)
    assert (b["groups_per_batch"], b["epochs"]) == (32, 10)
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} >= {
        "small_pretrain", "small_stage_a", "small_stage_b", "laion_stage_a", "laion_stage_b"}


def test_flags_override_the_yaml_which_overrides_defaults(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: 0.01\ngroups_per_batch: 5\nbeta: 0.5\n")
    cfg = resolve("stage_b", [*REQUIRED, "--config", str(cfg_file), "--lr", "0.002",
                              "--trainable", "a.*", "b.*", "--no-tensorboard",
                              "--where", "split = 'train'"])
    assert (cfg.lr, cfg.groups_per_batch, cfg.beta) == (0.002, 5, 0.5)
    assert cfg.trainable == ["a.*", "b.*"] and cfg.tensorboard is False
    assert cfg.where == "split = 'train'" and cfg.seed == 0


def test_default_file_follows_the_model_family(tmp_path):
    assert default_config_path("stage_a", "small").name == "small_stage_a.yaml"
    assert default_config_path("stage_b", "laion:/x.pt").name == "laion_stage_b.yaml"
    ckpt = tmp_path / "run" / "final"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"init": "laion:/x.pt"}))
    assert model_family(str(ckpt)) == "laion" and model_family(str(tmp_path / "run")) == "laion"
    cfg = resolve("stage_b", [*REQUIRED, "--init", str(tmp_path / "run")])
    assert cfg.groups_per_batch == 32  # laion_stage_b.yaml


def test_family_comes_from_the_recorded_family_not_from_words_in_the_config(tmp_path):
    """Regression: the family was once found by searching config.json for '"laion', which a
    Hugging Face id such as "laion/clap-htsat-unfused" in any field would fool."""
    small = tmp_path / "small_ckpt"
    small.mkdir()
    (small / "config.json").write_text(json.dumps({
        "family": "small", "name": "small-cnn6",
        "extra": {"note": "compare with laion/clap-htsat-unfused"}}))
    assert model_family(str(small)) == "small"
    assert default_config_path("stage_b", str(small)).name == "small_stage_b.yaml"
    hf = tmp_path / "hf_ckpt"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"family": "hf", "source": "hf:/x"}))
    assert model_family(str(hf)) == "hf" and model_family("hf:/anything") == "hf"
    assert default_config_path("stage_a", str(hf)).name == "laion_stage_a.yaml"
    assert model_family("msclap:/w.pth?version=2022") == "msclap"


def test_unknown_settings_and_bad_values_are_explained(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['learning_rate'\].*lr"):
        resolve("stage_a", [*REQUIRED, "--config", str(bad)])
    with pytest.raises(ValueError, match="--data OUT"):
        resolve("stage_a", ["--out", "R"])
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve("stage_a", [*REQUIRED, "--mixed-precision", "fp8"])
    with pytest.raises(ValueError, match=r"--lr-mult: 'text_branch\.\*' is not PATTERN=FACTOR"):
        resolve("stage_b", [*REQUIRED, "--lr-mult", "text_branch.*"])
    with pytest.raises(ValueError, match="FACTOR >= 0"):
        resolve("stage_b", [*REQUIRED, "--lr-mult", "text_branch.*=-1"])
    assert resolve("stage_b", [*REQUIRED, "--lr-mult", "a=0.3", "b.*=2"]).lr_mult == ["a=0.3", "b.*=2"]
    with pytest.raises(ValueError, match=r"average_from \(--average-from\) must be a whole number >= 1"):
        resolve("stage_b", [*REQUIRED, "--average-from", "0"])
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        resolve("stage_a", [*REQUIRED, "--config", str(tmp_path / "none.yaml")])


def test_help_explains_every_setting_with_its_built_in_default():
    import dataclasses

    from teminal.train.run_config import HELP, TrainConfig, build_parser

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(HELP) == names  # a new setting without help text fails here
    text = " ".join(build_parser("stage_b").format_help().split())
    assert "stage B: weight of the replayed single-sound loss" in text
    assert "peak learning rate (Adam) [0.001]" in text
    assert ("Precedence: a flag given here > the recipe's section for the model's family > its "
            "section for this stage > the YAML file") in text
