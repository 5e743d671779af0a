"""The order ablation (benchmarks/ablate_order.py) in its smallest setting, so it cannot rot:
one seed, two steps per stage, the demo's previous row (contrast head, audio branch frozen in
stage B, single sounds replayed), the row that widens the trainable subset with `default`, the
previous demo's row (the text at its own learning rate, the weights averaged) and the demo's
(moment_timing: its own build, junctions anywhere in 0.2-0.8 and several wordings, the moment
head), a few ZSTE items. Its table has every
column with mean, sd and a pooled Wilson interval. Its cache: a step's folder is named by the
hash of what decides it, so a changed recipe trains anew and an unchanged one is reused."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ablation():
    spec = importlib.util.spec_from_file_location("ablate_order", REPO / "benchmarks" /
                                                  "ablate_order.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ROWS = ["contrast_frozen_ov2_r2", "temporal_retain_text", "moment_timing",
        "contrast_frozen_text_lr03_avg"]


@pytest.mark.slow
def test_the_ablation_runs_end_to_end_and_reports_mean_sd_and_intervals(tmp_path, capsys):
    ablate = _ablation()
    assert ablate.main(["--seeds", "0", "--quick", "--rows", *ROWS, "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == json.loads((tmp_path / "ablation.json").read_text())
    row = summary["table"]["contrast_frozen_ov2_r2"]
    assert set(row) == set(ablate.COLUMNS)
    for cell in row.values():
        assert {"mean", "sd", "per_seed", "correct", "n", "ci95"} <= set(cell)
        assert 0 <= cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1] <= 1
    # rows with the same pretraining share one base, pretrained on the default build;
    # moment_timing's pretraining differs (its ?rule for a pretrained text tower's lr)
    base_rows = [row for row in summary["table"] if row.startswith("base")]
    assert len(base_rows) == 2 and all("single" in summary["table"][r] for r in base_rows)
    bases = {r: summary["recipes"][r]["steps"]["0"]["pretrain"] for r in ROWS}
    assert len({bases[r] for r in ROWS if r != "moment_timing"}) == 1
    assert bases["moment_timing"] != bases["contrast_frozen_ov2_r2"]
    assert "| contrast_frozen_ov2_r2 |" in (tmp_path / "ablation.md").read_text()

    def run(row, stage="stage_b"):
        return tmp_path / summary["recipes"][row]["steps"]["0"][stage]

    config = json.loads((run("contrast_frozen_ov2_r2") / "final" / "config.json").read_text())
    # stage A's head carried into stage B
    assert config["audio_head"]["layers"] == 0 and config["audio_head"]["contrast"] is True
    train_config = config["extra"]["train_config"]
    assert train_config["retain_singles"] == 2.0 and train_config["alpha_same_overlap"] == 2.0
    assert train_config["trainable"] == ["audio_head.*", "audio_projection.*",
                                         "text_branch.resblocks.1.*", "ln_final.*",
                                         "text_projection.*", "logit_scale_a"]
    assert train_config["recipe"]["name"] == "contrast_frozen_ov2_r2"
    assert run("contrast_frozen_text_lr03_avg", "stage_a") == run("contrast_frozen_ov2_r2",
                                                                  "stage_a")  # shared
    wide = json.loads((run("temporal_retain_text") / "final" / "config.json")
                      .read_text())["extra"]["train_config"]["trainable"]
    assert wide == ["default", "text_branch.resblocks.0.*"]
    # the demo's row draws its captions from several wordings and its timing from its own
    # build (the second event anywhere in 0.2-0.8), reads four stretches and their moment, is
    # scored on the default build like every row, and ZSTE counts only the wordings it never
    # trained on as held out
    timed = json.loads((run("moment_timing") / "final" / "config.json").read_text())
    worded = timed["extra"]["train_config"]
    assert worded["templates"] == ["paper.", "ext.after", "ext.followed_by", "ext.together",
                                   "ext.while_swapped"]
    # one recipe for both small models: each ?rule applies where its parameters exist
    assert worded["lr_mult"] == ["?text_branch.resblocks.*=0.3", "?text_branch.encoder.*=0.05"]
    assert timed["audio_head"]["moment"] is True and timed["audio_head"]["tokens"] == 4
    assert summary["recipes"]["moment_timing"]["data"] != summary["data"]
    import duckdb

    samples = Path(summary["recipes"]["moment_timing"]["data"]) / "manifests" / "samples.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{samples}' WHERE relation = 'forward' AND "
                      "slot_lengths IS NOT NULL").fetchall()[0][0] > 0         # a timed build
    zste = next(json.loads(p.read_text()) for p in (tmp_path / "seed0").glob("zste-*.json")
                if json.loads(p.read_text())["model"]["spec"] == str(run("moment_timing")))
    assert zste["data"]["path"] == summary["data"]
    # every wording and the timing sweep, at --quick's two junctions
    assert zste["protocol"]["templates"] == "all"
    assert zste["metrics"]["timing_sweep"]["junctions"] == [0.2, 0.8]
    held_out = zste["metrics"]["template_generalisation"]["heldout"]["templates"]
    assert held_out and not {"ext.after", "ext.followed_by"} & set(held_out)
    # the text at its own learning rate, the export averaged (over both quick steps)
    averaged = json.loads((run("contrast_frozen_text_lr03_avg") / "final" / "config.json")
                          .read_text())["extra"]["train_config"]
    assert averaged["lr_mult"] == ["text_branch.*=0.3"]
    assert (averaged["average_from"], averaged["average_every"]) == (1, 1)
    # a rerun reuses every finished stage and evaluation
    assert ablate.main(["--seeds", "0", "--quick", "--rows", *ROWS, "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["train_seconds"] == {
        "pretrain": 0.0, "stage_a": 0.0, "stage_b": 0.0}


def _keys(ablate, recipe, tmp_path, seed=0, build_id="B", quick=True) -> dict[str, str]:
    from teminal.train.recipes import resolve

    args = ablate.parse_args(["--quick"] if quick else [])
    model = ablate.seed_model_config(seed, tmp_path / "models")
    steps = ablate.plan(str(recipe), resolve(recipe, "small"), seed, model,
                        (tmp_path / "data", build_id), (tmp_path / "default", "A"), "WHERE", args,
                        tmp_path / f"seed{seed}")
    return {s.stage: s.folder.name for s in steps}


def test_a_changed_recipe_gets_new_step_folders_and_an_unchanged_one_its_old_ones(tmp_path):
    ablate = _ablation()
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("description: a row\nextends: contrast_frozen_ov2_r2\n")
    first = _keys(ablate, recipe, tmp_path)
    assert set(first) == {"pretrain", "stage_a", "stage_b"}
    assert _keys(ablate, recipe, tmp_path) == first
    # the description, the file's name and how the chain is split do not decide a result
    recipe.write_text("description: the same row, described anew\nextends: contrast_frozen_ov2_r2\n")
    assert _keys(ablate, recipe, tmp_path) == first
    assert _keys(ablate, "contrast_frozen_ov2_r2", tmp_path) == first
    # a changed stage-B setting trains stage B anew on the same base and stage A
    recipe.write_text("description: a row\nextends: contrast_frozen_ov2_r2\n"
                      "stage_b: {retain_singles: 3}\n")
    changed = _keys(ablate, recipe, tmp_path)
    assert changed["stage_b"] != first["stage_b"]
    assert (changed["pretrain"], changed["stage_a"]) == (first["pretrain"], first["stage_a"])
    # a changed stage A trains stage A and everything after it anew
    recipe.write_text("description: a row\nextends: contrast_frozen_ov2_r2\n"
                      "stage_a: {audio_head: additive}\n")
    changed = _keys(ablate, recipe, tmp_path)
    assert changed["pretrain"] == first["pretrain"]
    assert changed["stage_a"] != first["stage_a"] and changed["stage_b"] != first["stage_b"]
    # so do another seed and other step counts; other training data trains stages A and B
    # anew on the same base (pretrained on the default build)
    for other in (_keys(ablate, recipe, tmp_path, seed=1),
                  _keys(ablate, recipe, tmp_path, quick=False)):
        assert not set(other.values()) & set(changed.values())
    other = _keys(ablate, recipe, tmp_path, build_id="C")
    assert other["pretrain"] == changed["pretrain"]
    assert {other["stage_a"], other["stage_b"]}.isdisjoint(changed.values())


def test_quick_overrides_apply_over_the_resolved_recipe_not_over_its_flags():
    ablate = _ablation()
    args = ablate.parse_args(["--quick"])
    assert ablate.overrides("stage_b", {"average_from": 300, "average_every": 50}, args) == {
        "max_steps": 2, "average_from": 1, "average_every": 1}
    assert ablate.overrides("stage_b", {"retain_singles": 2.0}, args) == {"max_steps": 2}
    full = ablate.parse_args(["--stage-b-steps", "300"])
    assert ablate.overrides("stage_b", {"average_from": 300}, full) == {"max_steps": 300}
    assert ablate.overrides("stage_a", {}, full) == {}


def test_rows_that_are_not_recipes_are_one_error():
    ablate = _ablation()
    with pytest.raises(SystemExit, match="unknown recipe 'no_such_row'.*shipped recipes: .*paper"):
        ablate.main(["--rows", "no_such_row", "--quick"])


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
