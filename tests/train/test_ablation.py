"""The order ablation (benchmarks/ablate_order.py) in its smallest setting, so it cannot rot:
one seed, two steps per stage, the demo's row (contrast head, audio branch frozen in stage B,
single sounds replayed), the row that widens the trainable subset with `default` through the
command line, the row that draws stage-B captions from several wordings and the row with the
text at its own learning rate and the weights averaged, a few ZSTE items.
Its table has every column with mean, sd and a pooled Wilson interval."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ablation():
    spec = importlib.util.spec_from_file_location("ablate_order", REPO / "benchmarks" /
                                                  "ablate_order.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_ablation_runs_end_to_end_and_reports_mean_sd_and_intervals(tmp_path, capsys):
    ablate = _ablation()
    assert ablate.main(["--seeds", "0", "--quick", "--rows", "contrast_frozen_ov2_r2",
                        "temporal_retain_text", "contrast_frozen_r2_templates",
                        "contrast_frozen_text_lr03_avg", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == json.loads((tmp_path / "ablation.json").read_text())
    row = summary["table"]["contrast_frozen_ov2_r2"]
    assert set(row) == set(ablate.COLUMNS)
    for cell in row.values():
        assert {"mean", "sd", "per_seed", "correct", "n", "ci95"} <= set(cell)
        assert 0 <= cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1] <= 1
    assert "single" in summary["table"]["base"]
    assert "| contrast_frozen_ov2_r2 |" in (tmp_path / "ablation.md").read_text()
    config = json.loads((tmp_path / "seed0" / "b_contrast_frozen_ov2_r2" / "final" /
                         "config.json").read_text())
    # stage A's head carried into stage B
    assert config["audio_head"]["layers"] == 0 and config["audio_head"]["contrast"] is True
    train_config = config["extra"]["train_config"]
    assert train_config["retain_singles"] == 2.0 and train_config["alpha_same_overlap"] == 2.0
    assert train_config["trainable"] == ablate.FROZEN_AUDIO[1:]
    wide = json.loads((tmp_path / "seed0" / "b_temporal_retain_text" / "final" / "config.json")
                      .read_text())["extra"]["train_config"]["trainable"]
    assert wide == ["default", "text_branch.resblocks.0.*"]
    # the row with several wordings per relation draws them from the (extended) build, and ZSTE
    # counts only the wordings it never trained on as held out
    worded = json.loads((tmp_path / "seed0" / "b_contrast_frozen_r2_templates" / "final" /
                         "config.json").read_text())["extra"]["train_config"]["templates"]
    assert worded == ablate.TRAIN_TEMPLATES
    zste = json.loads((tmp_path / "seed0" / "zste_contrast_frozen_r2_templates.json").read_text())
    held_out = zste["metrics"]["template_generalisation"]["heldout"]["templates"]
    assert held_out and not {"ext.after", "ext.followed_by"} & set(held_out)
    # the text at its own learning rate, the export averaged (over both quick steps)
    averaged = json.loads((tmp_path / "seed0" / "b_contrast_frozen_text_lr03_avg" / "final" /
                           "config.json").read_text())["extra"]["train_config"]
    assert averaged["lr_mult"] == ["text_branch.*=0.3"]
    assert (averaged["average_from"], averaged["average_every"]) == (1, 1)
    # a rerun reuses every finished stage and evaluation
    assert ablate.main(["--seeds", "0", "--quick", "--rows", "contrast_frozen_ov2_r2",
                        "temporal_retain_text", "contrast_frozen_r2_templates",
                        "contrast_frozen_text_lr03_avg", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["train_seconds"] == {
        "pretrain": 0.0, "stage_a": 0.0, "stage_b": 0.0}


def test_the_held_out_ring_is_at_least_a_sixth_of_the_pairs_and_names_every_class():
    from teminal.evaluate.holdout import cycle_pairs, synthetic_holdout, where_excluding
    from teminal.pipeline.sources.synth import CLASS_NAMES

    pairs = synthetic_holdout()
    n = len(CLASS_NAMES)
    assert len(pairs) / (n * (n - 1) / 2) >= 1 / 6
    assert {c for p in pairs for c in p} == {c.replace("_", " ") for c in CLASS_NAMES}
    where = where_excluding([("dog's bark", "rain")])
    assert "'dog''s bark'" in where  # quoted for SQL
    with pytest.raises(ValueError):
        cycle_pairs(["a", "b"])
