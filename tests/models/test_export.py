"""`python -m teminal.models.export`: the command, its model card and its refusals (on a tiny
msclap model; each family's file is loaded by its own library in test_laion_spec.py,
test_msclap_family.py and test_hf_family.py)."""
from __future__ import annotations

import json

import pytest

from teminal.models import TrainingProvenance, load_model
from teminal.models.export import main


def _score(acc, n, lo, hi, chance=None) -> dict:
    s = {"accuracy": acc, "n": n, "correct": round(acc * n), "ci95": [lo, hi]}
    return {**s, "chance": chance} if chance is not None else s


@pytest.fixture
def trained(tiny_msclap, tmp_path):
    """(base spec, a stage-B run folder whose init is a stage-A run folder) on tiny msclap."""
    path, tok = tiny_msclap("2023")
    spec = f"msclap:{path}?version=2023&text={tok}"
    a = load_model(spec).save(tmp_path / "a" / "final", TrainingProvenance(
        stage="stage_a", init=spec, steps=3, world_size=1, data="/data", build_id="b1",
        synthetic=True, train_config={"lr": 1e-4, "groups_per_batch": 2}))
    load_model(str(a)).save(tmp_path / "b" / "final", TrainingProvenance(
        stage="stage_b", init=str(a), steps=5, world_size=1, data="/data", build_id="b1",
        synthetic=True, train_config={"lr": 1e-5, "retain_singles": 2,
                                      "trainable": ["default"]}))
    return spec, tmp_path / "b"


def _zste(tmp_path, sha: str):
    result = {"command": "zste", "label": "stage_b", "model": {"checkpoint_sha256": sha},
              "data": {"catalog_build_id": "b1", "synthetic": True},
              "metrics": {"task1_single": _score(0.9, 96, 0.83, 0.95, 0.083),
                          "task3_order": {**_score(0.8, 400, 0.76, 0.84, 0.333),
                                          "unseen": _score(0.7, 84, 0.6, 0.79),
                                          "variants": {"forward": _score(0.8, 200, 0.7, 0.9)}},
                          "compa_order": {"group": _score(0.5, 200, 0.43, 0.57, 0.167)}}}
    path = tmp_path / "zste.json"
    path.write_text(json.dumps(result))
    return path


def test_the_command_writes_the_file_and_a_card_with_base_data_recipe_and_zste_intervals(
        trained, tmp_path, capsys):
    spec, run = trained
    zste = _zste(tmp_path, load_model(str(run)).weights_sha256)
    assert main([str(run), "--out", str(tmp_path / "out" / "teminal.pth"),
                 "--zste", str(zste)]) == 0
    assert (tmp_path / "out" / "teminal.pth").is_file()
    card = (tmp_path / "out" / "teminal.md").read_text()
    assert "wrote" in capsys.readouterr().out
    assert f"`{spec}`" in card  # the base: where stage A started
    assert card.index("**stage_a**") < card.index("**stage_b**")
    assert "build b1 (synthetic stand-in data)" in card and "Trained on the synthetic" in card
    assert "lr = 1e-05; trainable = [\"default\"]; retain_singles = 2" in card
    assert "| task1_single | 0.900 | [0.830, 0.950] | 96 | 0.083 |" in card
    assert "| task3_order, unseen pairs | 0.700 | [0.600, 0.790] | 84 | - |" in card
    assert "| compa_order.group | 0.500 | [0.430, 0.570] | 200 | 0.167 |" in card
    assert "variants" not in card
    assert "CLAP(model_fp='teminal.pth', version='2023'" in card


def test_a_zste_result_of_another_checkpoint_is_refused_and_nothing_is_written(
        trained, tmp_path, capsys):
    zste = _zste(tmp_path, "0" * 64)
    assert main([str(trained[1]), "--out", str(tmp_path / "x.pth"), "--zste", str(zste)]) == 1
    assert "scored weights 000000000000, not this model's" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists() and not (tmp_path / "x.md").exists()


@pytest.mark.parametrize("args, says", [
    (["--format", "hf"], "family msclap: it exports as --format msclap"),
    (["--out-suffix", ".pt"], "a msclap export is a .pth file"),
    (["--exists"], "exists; choose another --out"),
])
def test_wrong_format_suffix_or_an_existing_path_is_one_line(trained, tmp_path, capsys, args,
                                                             says):
    out = tmp_path / ("x.pt" if "--out-suffix" in args else "x.pth")
    if "--exists" in args:
        out.write_text("keep me")
    extra = [a for a in args if a.startswith("--format") or a == "hf"]
    assert main([str(trained[1]), "--out", str(out), *extra]) == 1
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or out.read_text() == "keep me"


def test_help_names_every_format_and_the_head_flag(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(word in text for word in ("laion", "msclap", "hf", "--without-head", "--zste"))


def test_a_card_without_the_head_says_the_file_is_the_pooled_model_and_its_figures_are_not(
        tiny_msclap, tmp_path):
    path, tok = tiny_msclap("2023")
    model = load_model(f"msclap:{path}?version=2023&text={tok}")
    model.add_audio_head("moment_contrast")
    run = model.save(tmp_path / "run" / "final", TrainingProvenance(stage="stage_a"))
    zste = _zste(tmp_path, load_model(str(run)).weights_sha256)
    assert main([str(run), "--out", str(tmp_path / "refused.pth")]) == 1
    assert main([str(run), "--out", str(tmp_path / "t.pth"), "--without-head",
                 "--zste", str(zste)]) == 0
    card = (tmp_path / "t.md").read_text()
    assert "**Dropped.**" in card and "the file holds the pooled model only" in card
    assert "the exported file (without it) was not scored" in card
