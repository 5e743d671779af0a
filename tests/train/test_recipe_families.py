"""One recipe name, the same method on every family: the demo's recipe through stages A and B
(a step each) on the small CPU model and on a tiny laion model with the real checkpoint's
parameter names (HTSAT-tiny, a 12-layer RoBERTa-shaped text tower), its small-family patterns
on both small models, its hf patterns on a real ClapModel's names; hf and msclap smoke runs
wait for their order-aware heads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from teminal.models import load_model
from teminal.train.recipes import resolve
from teminal.train.run_config import present_patterns

DEMO = "moment_timing"   # the Makefile's DEMO_RECIPE (tests/train/test_recipes.py checks)
COMMON = ["--max-steps", "1", "--groups-per-batch", "1", "--num-workers", "0",
          "--mixed-precision", "no", "--cpu", "--no-tensorboard", "--no-progress",
          "--save-every", "0", "--log-every", "1"]


def run_demo_recipe(spec: str, data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Stage A then stage B of the demo's recipe, one step each (the export averaged over it)."""
    from teminal.train import stage_a, stage_b

    a, b = tmp_path / "a", tmp_path / "b"
    assert stage_a.main(["--recipe", DEMO, "--model", spec, "--data", str(data),
                         "--out", str(a), *COMMON]) == 0
    assert stage_b.main(["--recipe", DEMO, "--model", str(a), "--data", str(data),
                         "--out", str(b), *COMMON, "--average-from", "1",
                         "--average-every", "1"]) == 0
    return a, b


def moved(before, after) -> set[str]:
    old, new = before.named_weights(), after.named_weights()
    return {n for n, p in new.items() if n in old and not torch.equal(p, old[n])}


def check_the_demo_recipe_ran(a: Path, b: Path, family: str, frozen: str, text: str) -> None:
    """Stage A added the recipe's head, stage B recorded the recipe, kept the audio branch
    (`frozen`) as it was and trained the text tower's blocks (`text`)."""
    resolved = resolve(DEMO, family)
    head = json.loads((a / "final" / "config.json").read_text())["audio_head"]
    assert head["layers"] == 0 and head["contrast"] is True
    train_config = json.loads((b / "final" / "config.json").read_text())["extra"]["train_config"]
    assert train_config["recipe"]["name"] == DEMO and train_config["recipe"]["family"] == family
    assert train_config["recipe_hash"] == resolved.stage_hash("stage_b")
    assert train_config["retain_singles"] == 2.0 and train_config["lr_mult"]
    changed = moved(load_model(str(a)), load_model(str(b)))
    assert changed and not {n for n in changed if n.startswith(frozen)}, sorted(changed)[:5]
    assert {n for n in changed if n.startswith(text)}
    assert {n for n in changed if n.startswith("audio_head.")}


@pytest.mark.slow
def test_the_demo_recipe_runs_stages_a_and_b_on_the_small_model(tiny_data, tmp_path):
    a, b = run_demo_recipe("small", tiny_data, tmp_path)
    check_the_demo_recipe_ran(a, b, "small", "audio_branch.", "text_branch.resblocks.0.")


@pytest.fixture(scope="module")
def tiny_laion_htsat(tmp_path_factory) -> Path:
    """A laion-family checkpoint folder of random weights named as 630k-audioset-best.pt's:
    HTSAT-tiny and a 12-layer RoBERTa-shaped text tower (narrow feed-forward layers)."""
    from teminal.models.laion import checkpoint as laion_checkpoint
    from teminal.models.laion import loading
    from teminal.testing import write_fake_roberta_tokenizer

    folder = tmp_path_factory.mktemp("laion")
    tokenizer = write_fake_roberta_tokenizer(folder / "tokenizer")
    vocab = len(json.loads((tokenizer / "vocab.json").read_text()))
    shapes = {"audio_branch.patch_embed.proj.weight": torch.zeros(96, 1, 4, 4),
              "audio_projection.0.weight": torch.zeros(512, 768),
              "text_branch.embeddings.word_embeddings.weight": torch.zeros(vocab, 768),
              "text_branch.embeddings.position_embeddings.weight": torch.zeros(80, 768),
              "text_branch.embeddings.token_type_embeddings.weight": torch.zeros(1, 768),
              "text_branch.encoder.layer.0.intermediate.dense.weight": torch.zeros(32, 768),
              "text_branch.encoder.layer.11.output.dense.weight": torch.zeros(768, 32)}
    config = {**laion_checkpoint.laion_config_for(shapes, "630k-audioset-best.pt"),
              "family": "laion", "seed": 0}
    loading.build(config, tokenizer).save(folder / "model")
    return folder / "model"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside laion's HTSAT
def test_the_demo_recipe_runs_stages_a_and_b_on_a_laion_htsat_model(tiny_data, tiny_laion_htsat,
                                                                    tmp_path):
    assert load_model(str(tiny_laion_htsat)).family == "laion"
    a, b = run_demo_recipe(str(tiny_laion_htsat), tiny_data, tmp_path)
    check_the_demo_recipe_ran(a, b, "laion", "audio_branch.", "text_branch.encoder.layer.11.")
    head = json.loads((a / "final" / "config.json").read_text())["audio_head"]
    assert head["source"] == "frames"  # HTSAT's own frame features, no second pass


@pytest.mark.slow
def test_the_demo_recipe_runs_stages_a_and_b_on_an_hf_model(tiny_data, tmp_path):
    from teminal.testing import write_tiny_hf_clap

    # the recipe names clap-htsat-unfused's last text layers: a tiny model of the same depth
    model = write_tiny_hf_clap(tmp_path / "hf", text_layers=12)
    a, b = run_demo_recipe(f"hf:{model}", tiny_data, tmp_path)
    check_the_demo_recipe_ran(a, b, "hf", "audio_model.", "text_model.encoder.layer.")


@pytest.mark.slow
def test_the_demo_recipe_runs_stages_a_and_b_on_an_msclap_model(tiny_data, tiny_msclap,
                                                                tmp_path):
    path, tokenizer = tiny_msclap("2023")
    a, b = run_demo_recipe(f"msclap:{path}?version=2023&text={tokenizer}", tiny_data, tmp_path)
    check_the_demo_recipe_ran(a, b, "msclap", "audio_encoder.base.", "caption_encoder.base.")


def trainable_under(recipe_patterns: list[str], names: list[str]) -> list[str]:
    """The patterns a run applies to a model of these parameter names (the optional ones
    settled), each checked to match."""
    from teminal.models.trainable import select

    patterns = present_patterns(recipe_patterns, names)
    assert not select(names, patterns)[1], select(names, patterns)[1]  # every one matches
    return patterns


@pytest.mark.slow
def test_the_demo_recipe_trains_each_small_models_text_blocks_and_no_audio_branch():
    """small-cnn6 (laion's text transformer, two blocks) and small-minilm (a pretrained
    MiniLM, six layers): one family, one section, the patterns that fit each model."""
    section = resolve(DEMO, "small").section("stage_b")
    for spec, expected in (
            ("small", ["audio_head.*", "audio_projection.*", "text_branch.resblocks.1.*",
                       "ln_final.*", "text_projection.*", "logit_scale_a",
                       "text_branch.resblocks.0.*"]),  # as the ablation measured it
            ("small-minilm-moment", ["audio_head.*", "audio_projection.*", "text_projection.*",
                                     "logit_scale_a", "text_branch.encoder.layer.4.*",
                                     "text_branch.encoder.layer.5.*"])):
        model = load_model(spec)
        model.add_audio_head("moment_contrast")
        patterns = trainable_under(section["trainable"], list(model.named_weights()))
        assert patterns == expected, spec
        model.set_trainable(patterns)
        assert not [n for n in model.trainable_names() if n.startswith("audio_branch.")]


def test_the_demo_recipe_names_a_real_hf_clap_models_parameters():
    """clap-htsat-unfused's layout (transformers' default ClapConfig), built without memory:
    every plain pattern of the hf section matches (the head's come with the head)."""
    from transformers import ClapConfig, ClapModel

    with torch.device("meta"):
        names = [n for n, _ in ClapModel(ClapConfig()).named_parameters()]
    section = resolve(DEMO, "hf").section("stage_b")
    trainable_under([p for p in section["trainable"] if not p.startswith("audio_head.")], names)
    assert any(n.startswith("text_model.encoder.layer.11.") for n in names)
