"""Named recipes (teminal.train.recipes): `extends` merges section by section and key by key,
family sections and flags override in that order, broken chains are one error, every shipped
recipe resolves on every family it names, a run records the recipe and its hash, and the demo
runs exactly the Makefile's recipe with the settings the ablation gives it."""
from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from teminal.train import recipes
from teminal.train.recipes import RecipeError, load, resolve, shipped
from teminal.train.run_config import (TrainConfig, build_parser, present_patterns, present_rules,
                                      resolve as resolve_config, resume_keys, to_flags)

REPO = Path(__file__).resolve().parents[2]
REQUIRED = ["--data", "D", "--out", "R"]
# a spec of each family that parses without any file (the family is all resolution needs)
SPECS = {"small": "small", "laion": "laion:/nowhere/630k-audioset-best.pt",
         "hf": "hf:/nowhere/clap", "msclap": "msclap:/nowhere/CLAP_weights_2023.pth?version=2023"}
DEMO = "moment_timing"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_extends_merges_section_by_section_key_by_key_and_lists_replace(tmp_path):
    write(tmp_path, "parent", """
description: the parent
build: {template_set: extended, junction: [0.3, 0.7]}
stage_a: {audio_head: additive, lambda_a: 0.5}
stage_b: {retain_singles: 1, trainable: ["a.*", "b.*"], alpha_same_time: 2}
families:
  small: {pretrain: {}, stage_b: {lr_mult: ["a.*=0.3"]}}
  laion: {stage_b: {trainable: ["l.*"]}}
""")
    child = write(tmp_path, "child", """
description: the child
extends: parent
build: {junction: null, gap: [0, 1]}
stage_b: {retain_singles: 2, trainable: ["c.*"]}
families:
  small: {stage_b: {average_from: 3}}
""")
    recipe = load(child)
    assert (recipe.name, recipe.chain, recipe.description) == ("child", ["parent"], "the child")
    assert recipe.build == {"template_set": "extended", "gap": [0, 1]}  # null: the default again
    assert recipe.stages["stage_a"] == {"audio_head": "additive", "lambda_a": 0.5}
    assert recipe.stages["stage_b"] == {"retain_singles": 2.0, "trainable": ["c.*"],
                                        "alpha_same_time": 2.0}  # the list replaced, not appended
    small = recipe.for_family("small")
    assert list(small.stages) == ["pretrain", "stage_a", "stage_b"]
    assert small.section("stage_b") == {"retain_singles": 2.0, "trainable": ["c.*"],
                                        "alpha_same_time": 2.0, "lr_mult": ["a.*=0.3"],
                                        "average_from": 3}
    laion = recipe.for_family("laion")
    assert list(laion.stages) == ["stage_a", "stage_b"]  # pretraining is the small family's
    assert laion.section("stage_b")["trainable"] == ["l.*"]  # the family section wins
    with pytest.raises(RecipeError, match=r"runs on the families small, laion, not hf: add a "
                                          r"`families: \{hf: \{\.\.\.\}\}` section"):
        recipe.for_family("hf")


def test_null_drops_a_stage_or_a_family_the_parent_has(tmp_path):
    write(tmp_path, "parent", "description: p\nstage_a: {}\nstage_b: {}\n"
                              "families: {small: {pretrain: {}}, laion: {}}\n")
    child = write(tmp_path, "child", "description: c\nextends: parent\nstage_a: null\n"
                                     "families: {laion: null}\n")
    recipe = load(child)
    assert list(recipe.families) == ["small"]
    assert list(recipe.for_family("small").stages) == ["pretrain", "stage_b"]
    with pytest.raises(RecipeError, match=r"runs no stage_a on the small family \(it runs "
                                          r"pretrain, stage_b"):
        recipe.for_family("small").section("stage_a")
    # without a families section a recipe runs on every family
    anywhere = write(tmp_path, "anywhere", "description: a\nstage_b: {beta: 0.5}\n")
    assert resolve(anywhere, "msclap").section("stage_b") == {"beta": 0.5}


def test_flags_win_over_the_family_section_which_wins_over_the_stage_section(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.01\nretain_singles: 0.5\nbeta: 0.25\nalpha_cross_time: 0.75\n")
    recipe = write(tmp_path, "r", """
description: r
stage_b: {retain_singles: 1, beta: 0.5, lr: 0.002}
families: {small: {stage_b: {beta: 0.7, lr: 0.003}}}
""")
    cfg = resolve_config("stage_b", [*REQUIRED, "--config", str(config), "--recipe", str(recipe),
                                     "--lr", "0.004"])
    assert cfg.alpha_cross_time == 0.75   # the YAML where the recipe says nothing
    assert cfg.retain_singles == 1.0      # the recipe's stage section over the YAML
    assert cfg.beta == 0.7                # its family section over its stage section
    assert cfg.lr == 0.004                # the flag over everything
    assert cfg.recipe["name"] == "r" and cfg.recipe["family"] == "small"
    assert cfg.recipe["file"] == str(recipe)  # not a shipped recipe: where it came from


def test_a_stage_the_recipe_does_not_run_is_refused_naming_what_it_runs():
    with pytest.raises(ValueError, match="recipe 'b_only' runs no stage_a on the small family"):
        resolve_config("stage_a", [*REQUIRED, "--recipe", "b_only"])
    with pytest.raises(ValueError, match="recipe 'paper' runs no pretrain on the laion family"):
        resolve_config("pretrain", [*REQUIRED, "--recipe", "paper", "--model", SPECS["laion"]])
    with pytest.raises(ValueError, match="recipe 'temporal' .* runs on the families small, not "
                                         "hf"):
        resolve_config("stage_b", [*REQUIRED, "--recipe", "temporal", "--model", SPECS["hf"]])


def test_cycles_and_unknown_recipes_are_one_error_naming_the_chain(tmp_path):
    write(tmp_path, "a", "description: a\nextends: b\n")
    write(tmp_path, "b", "description: b\nextends: c\n")
    write(tmp_path, "c", "description: c\nextends: a\n")
    with pytest.raises(RecipeError, match=r"recipe chain a -> b -> c -> a is a cycle"):
        load(tmp_path / "a.yaml")
    write(tmp_path, "d", "description: d\nextends: e\n")
    write(tmp_path, "e", "description: e\nextends: nowhere\n")
    with pytest.raises(RecipeError, match=r"recipe 'e' \(.*e\.yaml\) extends unknown recipe "
                                          r"'nowhere' \(chain d -> e -> nowhere\); shipped "
                                          r"recipes: .*paper"):
        load(tmp_path / "d.yaml")
    with pytest.raises(RecipeError, match=r"unknown recipe 'no_such'.*shipped recipes: .*paper"):
        load("no_such")
    # a parent is found by name beside its child (or shipped), or by a path relative to it
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "child", "description: child\nextends: ../c_free.yaml\n")
    write(tmp_path, "c_free", "description: free\nextends: paper\nstage_b: {beta: 0.5}\n")
    assert load(tmp_path / "sub" / "child.yaml").chain == ["c_free", "paper"]
    for error in (RecipeError("x"),):
        assert "\n" not in str(error)


@pytest.mark.parametrize("text, message", [
    ("stage_b: {}\n", r"`description:` \(what it is and why\) is required"),
    ("description: x\nretain_singles: 2\n", r"unknown key\(s\) \['retain_singles'\].*settings "
                                            r"go inside a stage section"),
    ("description: x\nstage_b: {retain_singlez: 2}\n", r"stage_b: unknown setting "
                                                       r"'retain_singlez'; settings: .*"),
    ("description: x\nstage_b: {model: small}\n", r"stage_b\.model: which model, data and run "
                                                  r"folder are the command line's \(--model\)"),
    ("description: x\nstage_b: {lr: 2}\n", r"stage_b: lr \(--lr\) must be a finite number > 0 "
                                           r"and <= 1"),
    ("description: x\nstage_b: {trainable: 3}\n", r"stage_b\.trainable is a list of text"),
    ("description: x\nbuild: {sample_rate: 16000}\n", r"build\.sample_rate is not a recipe "
                                                      r"build setting; they are template_set"),
    ("description: x\nfamilies: {tiny: {}}\n", r"unknown family 'tiny' in `families:`; "
                                               r"families: small, laion, hf, msclap"),
    ("description: x\nfamilies: {small: {stage_c: {}}}\n", r"families\.small holds stage "
                                                           r"sections"),
    ("[1, 2]\n", r"a recipe is a mapping"),
])
def test_a_bad_recipe_is_one_error_naming_its_file_and_the_fix(tmp_path, text, message):
    path = write(tmp_path, "bad", text)
    with pytest.raises(RecipeError, match=message) as caught:
        load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def families_of(recipe) -> list[str]:
    """The families a recipe runs on: those it names, or every one."""
    return list(recipe.families) if recipe.families is not None else list(SPECS)


@pytest.mark.parametrize("name", shipped())
def test_every_shipped_recipe_resolves_for_every_family_it_names(name):
    recipe = load(name)
    assert recipe.description and recipe.path.parent == recipes.RECIPE_DIR
    families = families_of(recipe)
    assert families, name
    for family in families:
        for stage in recipe.for_family(family).stages:
            cfg = resolve_config(stage, [*REQUIRED, "--recipe", name, "--model", SPECS[family]])
            assert cfg.recipe["name"] == name and cfg.recipe["family"] == family
            assert cfg.recipe_hash == recipe.for_family(family).stage_hash(stage)
    assert set(recipe.build) <= set(recipes.BUILD_KEYS)


@pytest.mark.parametrize("name", shipped())
def test_every_template_prefix_a_recipe_trains_on_names_a_template_of_its_build(name):
    """A prefix its build's captions never carry ("pos." on an `extended` build) would train on
    nothing it names."""
    from teminal.pipeline.captions import template_ids

    recipe = load(name)
    ids = template_ids(recipe.build.get("template_set", "paper"))
    for family in families_of(recipe):
        for stage, settings in recipe.for_family(family).stages.items():
            for prefix in settings.get("templates") or ():
                assert any(i.startswith(prefix) for i in ids), (name, family, stage, prefix)


def test_the_paper_and_the_demo_recipes_run_on_every_family_and_stages_a_and_b():
    for name in ("paper", DEMO):
        assert list(load(name).families) == ["small", "laion", "hf", "msclap"], name
        for family in SPECS:
            stages = list(resolve(name, family).stages)
            assert stages == (["pretrain"] if family == "small" else []) + ["stage_a", "stage_b"]


def test_recipe_build_settings_are_pipeline_build_options_and_become_its_flags():
    from teminal.pipeline.cli import build

    options = {p.name for p in build.params}
    assert set(recipes.BUILD_KEYS) <= options
    assert recipes.build_flags({"template_set": "extended", "junction": [0.2, 0.8], "gap": 0}) \
        == ["--gap", "0", "--junction", "0.2,0.8", "--template-set", "extended"]
    assert recipes.build_flags({}) == []
    assert recipes.build_flags(load("contrast_frozen_r2_templates").build) == [
        "--template-set", "extended"]


def test_the_hash_covers_the_settings_not_the_name_description_or_chain(tmp_path):
    base = resolve(DEMO, "small")
    same = write(tmp_path, "renamed", f"description: another text\nextends: {DEMO}\n")
    assert resolve(same, "small").stage_hash("stage_b") == base.stage_hash("stage_b")
    changed = write(tmp_path, "changed", f"description: x\nextends: {DEMO}\n"
                                         "stage_b: {retain_singles: 3}\n")
    assert resolve(changed, "small").stage_hash("stage_b") != base.stage_hash("stage_b")
    assert resolve(changed, "small").stage_hash("stage_a") == base.stage_hash("stage_a")
    built = write(tmp_path, "built", f"description: x\nextends: {DEMO}\n"
                                     "build: {junction: [0.3, 0.7]}\n")
    assert resolve(built, "small").stage_hash("stage_a") != base.stage_hash("stage_a")
    # an int where the setting is a float, a head as a mapping: the same settings, one hash
    ints = write(tmp_path, "ints", f"description: x\nextends: {DEMO}\n"
                                   "stage_b: {retain_singles: 2}\n")
    assert resolve(ints, "small").stage_hash("stage_b") == base.stage_hash("stage_b")
    head = write(tmp_path, "head", "description: x\nstage_a: {audio_head: {layers: 0, "
                                   "contrast: true}}\n")
    text = write(tmp_path, "text", "description: x\nstage_a: {audio_head: "
                                   "'{\"contrast\": true, \"layers\": 0}'}\n")
    assert resolve(head, "laion").stage_hash("stage_a") == resolve(text, "laion").stage_hash(
        "stage_a")


def test_a_run_records_the_resolved_recipe_and_resume_compares_its_hash():
    cfg = resolve_config("stage_b", [*REQUIRED, "--recipe", DEMO])
    record = cfg.recipe
    assert record["name"] == DEMO and record["extends"][0] == "contrast_frozen_text_lr03_avg"
    assert record["extends"][-1] == "paper" and record["family"] == "small"
    assert record["stage_b"]["average_from"] == 300 and "pretrain" in record
    assert "file" not in record  # a shipped recipe is named, not located
    assert cfg.recipe_hash == resolve(DEMO, "small").stage_hash("stage_b")
    assert "recipe_hash" in resume_keys() and "recipe" not in resume_keys()
    # the record survives the run folder's YAML and reads back as the same settings
    again = TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg
    # the help says what --recipe is and lists what is shipped
    text = " ".join(build_parser("stage_b").format_help().split())
    assert "--recipe NAME|PATH" in text and all(name in text for name in shipped())
    assert "--recipe-hash" not in text


def test_flags_written_from_settings_resolve_back_to_those_settings():
    settings = {"max_steps": 2, "average_from": 1, "trainable": ["a.*", "?b.*"],
                "retain_singles": 0.25, "tensorboard": False, "audio_head": "additive"}
    cfg = resolve_config("stage_b", [*REQUIRED, *to_flags(settings)])
    assert {k: getattr(cfg, k) for k in settings} == settings
    with pytest.raises(ValueError, match="cannot be given as a flag"):
        to_flags({"average_from": None})


def test_optional_patterns_apply_where_they_match_and_plain_ones_stay():
    names = ["text_branch.resblocks.0.w", "text_projection.w", "logit_scale_a"]
    assert present_patterns(["?text_branch.resblocks.*", "?text_branch.encoder.layer.5.*",
                             "text_projection.*", "missing.*"], names) == [
        "text_branch.resblocks.*", "text_projection.*", "missing.*"]  # a plain miss stays
    assert present_patterns(None, names) is None
    assert present_rules(["?text_branch.*=0.3", "?caption_encoder.*=0.3", "x.*=2"], names) == [
        "text_branch.*=0.3", "x.*=2"]
    assert present_rules(None, names) is None


# ---- the demo runs the Makefile's recipe, as the ablation runs it -------------------------

def makefile_recipe() -> str:
    text = (REPO / "Makefile").read_text()
    name = re.search(r"^DEMO_RECIPE \?= (\S+)$", text, re.M).group(1)
    assert "scripts/demo.sh $(DEMO) $(DEMO_RECIPE)" in text
    return name


def demo_commands() -> dict[str, list[str]]:
    """The demo's stage and build commands, as argument lists (shell variables kept as text)."""
    text = (REPO / "scripts" / "demo.sh").read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        if m := re.search(r"train/(pretrain|stage_a|stage_b)\.py (.*)$", line):
            out[m.group(1)] = shlex.split(m.group(2))
        elif m := re.match(r"\s*pipeline build (.*)$", line):
            out["build"] = shlex.split(m.group(1))
    return out


def _ablation():
    spec = importlib.util.spec_from_file_location("ablate_order", REPO / "benchmarks" /
                                                  "ablate_order.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _settings(stage: str, argv: list[str]) -> dict:
    """The resolved settings of a stage command, its run folder and model path aside (the
    demo's checkpoints and the ablation's are both of the small family)."""
    argv = list(argv)
    for flag, value in (("--model", "small"), ("--out", "R")):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    cfg = resolve_config(stage, argv).to_dict()
    return {k: v for k, v in cfg.items() if k not in ("model", "out")}


def test_the_demo_runs_the_makefile_recipe_with_the_settings_the_ablation_gives_it():
    from teminal.evaluate.holdout import synthetic_holdout, where_excluding

    recipe = makefile_recipe()
    assert recipe == DEMO
    where = where_excluding(synthetic_holdout())
    ablate = _ablation()
    commands = demo_commands()
    subst = {"$RECIPE": recipe, "$DATA": "D", "$HOLDOUT": where}
    for stage in ("pretrain", "stage_a", "stage_b"):
        argv = [subst.get(tok, tok) for tok in commands[stage]]
        assert argv[:2] == ["--recipe", recipe], stage  # the method comes from the recipe alone
        flags = {tok for tok in argv if tok.startswith("--")}
        assert flags <= {"--recipe", "--model", "--data", "--out", "--where"}, (stage, flags)
        ablation = ablate.stage_argv(stage, recipe, "small", "D", 0, where, {})
        assert _settings(stage, argv) == _settings(stage, ablation), stage
    # the same data: the demo's build flags are the ablation's, then the recipe's own
    build = commands["build"]
    assert build[:6] == ["--dataset", "esc50", "--root", "$SRC", "--out", "$DATA"]
    assert build[-2:] == ["--no-progress", "${RECIPE_BUILD[@]}"]
    pairs = dict(zip(build[6:-2:2], build[7:-2:2]))
    assert pairs == {"--" + k.replace("_", "-"): str(v) for k, v in ablate.DEMO_BUILD.items()}
    script = (REPO / "scripts" / "demo.sh").read_text()
    assert 'python -m teminal.train.recipes build-flags "$RECIPE"' in script


def test_the_readme_and_benchmarks_cite_shipped_recipes_by_name():
    readme = (REPO / "README.md").read_text()
    # the headline's column of the demo names its recipe, and each family's GPU command runs it
    assert re.search(rf"\| \*\*[^|]*the demo \(`{DEMO}`\)\*\* \|", readme)
    for spec in ("small", "laion:", "hf:", "'msclap:"):
        assert re.search(rf"--mixed_precision bf16 train/(pretrain|stage_a)\.py --recipe {DEMO} "
                         rf"--model {spec}", readme), spec
    names = set()
    for line in (REPO / "BENCHMARKS.md").read_text().replace("\\\n", " ").splitlines():
        for rows in re.findall(r"--rows (.*)", line):
            for token in rows.split():
                if token.startswith(("-", "#")):
                    break
                names |= {token.strip("`")} if re.fullmatch(r"`?[a-z][a-z0-9_]*`?", token) else set()
    assert names and names <= set(shipped()), sorted(names - set(shipped()))
