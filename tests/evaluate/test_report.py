"""Result JSON schema, tables, `evaluate compare` and the PNG plots."""
from __future__ import annotations

import copy
import hashlib
import json

import pytest
from click.testing import CliRunner

from coded import FakeModel, OrderBlindModel, make_testset
from teminal.evaluate.cli import main
from teminal.evaluate.report import (
    SCHEMA_VERSION, checkpoint_sha256, compare_table, default_label, format_table, load_result,
    new_result, validate_result, write_result,
)
from teminal.evaluate.training_data import TrainingData
from teminal.evaluate.zste import evaluate_zste, protocol

PNG = b"\x89PNG\r\n\x1a\n"


def zste_result(model, label, spec="small"):
    training = TrainingData(path="x", pairs={frozenset(("dog", "siren"))}, template_ids=set())
    out = evaluate_zste(model, make_testset(), progress=False, training=training)
    return new_result("zste", spec=spec, model=model, label=label, argv=["evaluate", "zste"],
                      seed=0, data={"path": "OUT", "dataset": "fake", "split": "test",
                                    "catalog_build_id": "b123", "synthetic": True},
                      protocol=protocol("all", 0, "test"), metrics=out["metrics"],
                      items=out["items"], training_data=training.to_dict(), timing=out["timing"])


@pytest.fixture(scope="module")
def results():
    return [zste_result(OrderBlindModel(), "base"), zste_result(FakeModel(), "stage_b")]


def test_result_follows_the_schema(results):
    r = results[0]
    assert validate_result(r) == []
    assert r["schema_version"] == SCHEMA_VERSION and r["command"] == "zste"
    assert r["model"]["spec"] == "small" and r["model"]["checkpoint_sha256"] == "random-init"
    assert r["data"]["catalog_build_id"] == "b123" and r["data"]["synthetic"] is True
    for task in ("task1_single", "task2_mixture", "task3_order", "task4_compositional",
                 "task5_position"):
        s = r["metrics"][task]
        assert 0.0 <= s["accuracy"] <= 1.0 and s["n"] > 0 and len(s["ci95"]) == 2
    assert r["timing"]["clips_per_s"] > 0
    json.dumps(r)   # serialisable as is


@pytest.mark.parametrize("breakage,message", [
    (lambda r: r.pop("seed"), "missing 'seed'"),
    (lambda r: r.__setitem__("schema_version", 99), "schema_version"),
    (lambda r: r["model"].pop("checkpoint_sha256"), "model.checkpoint_sha256"),
    (lambda r: r["data"].__setitem__("synthetic", "yes"), "data.synthetic"),
    (lambda r: r["metrics"]["task3_order"].__setitem__("accuracy", 1.5), "outside 0..1"),
    (lambda r: r["metrics"]["task1_single"].pop("n"), "task1_single"),
    (lambda r: r["metrics"].pop("task1_single"), "task1_single missing"),
])
def test_schema_violations_are_named(results, breakage, message):
    r = copy.deepcopy(results[0])
    breakage(r)
    problems = validate_result(r)
    assert any(message in p for p in problems), problems


def test_load_result_rejects_other_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not an evaluation result"):
        load_result(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_result(bad)


def test_table_is_readable(results):
    text = format_table(results[0])
    for needle in ("1 single", "3 order (fwd+rev)", "CompA-order group", "held-out wording",
                   "SYNTHETIC", "unseen", "order confusion", "order cosine", "clips/s"):
        assert needle in text, needle


def test_compare_lines_up_models_with_differences(results):
    text = compare_table(results, ["base", "stage_b"])
    lines = {l.split("  ")[0].strip(): l for l in text.splitlines()}
    order = lines["3 order (fwd+rev)"]
    assert "0.500" in order and "1.000" in order and "+0.500" in order
    assert "3 order (fwd+rev) [unseen]" in lines
    assert "d stage_b" in text


def test_compare_cli_prints_and_plots(results, tmp_path):
    paths = [write_result(r, tmp_path / f"zste_{r['label']}.json") for r in results]
    plot = tmp_path / "compare.png"
    res = CliRunner().invoke(main, ["compare", *map(str, paths), "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert "base" in res.output and "stage_b" in res.output and "+0.500" in res.output
    assert plot.read_bytes()[:8] == PNG
    res = CliRunner().invoke(main, ["compare", *map(str, paths), "--labels", "only-one"])
    assert res.exit_code != 0 and "labels" in res.output
    res = CliRunner().invoke(main, ["show", str(paths[0])])
    assert res.exit_code == 0 and "3 order" in res.output


def test_compare_plots_go_into_a_folder_as_zstes_do(results, tmp_path):
    paths = [write_result(r, tmp_path / f"zste_{r['label']}.json") for r in results]
    res = CliRunner().invoke(main, ["compare", *map(str, paths), "--plots", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p" / "compare.png").read_bytes()[:8] == PNG
    shown = CliRunner().invoke(main, ["compare", "--help"]).output
    assert "--plots DIRECTORY" in shown and "--plot " not in shown   # the old spelling: hidden


def test_confusion_plot(results, tmp_path):
    from teminal.evaluate.plots import plot_order_confusion

    path = plot_order_confusion(results[0], tmp_path / "sub" / "c.png")
    assert path.read_bytes()[:8] == PNG


def test_checkpoint_hash_and_labels(tmp_path):
    weights = tmp_path / "run" / "final" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"abc")
    (weights.parent / "config.json").write_text('{"family": "small"}')
    sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert checkpoint_sha256(str(weights.parent)) == sha_abc
    assert checkpoint_sha256(f"laion:{weights}") == sha_abc
    assert checkpoint_sha256("small") == "random-init"
    assert default_label(str(weights.parent)) == "run"
    assert default_label("laion:/x/630k-audioset-best.pt") == "630k-audioset-best"


def test_laion_spec_with_a_tokenizer_option_is_hashed_and_labelled_by_its_checkpoint(tmp_path):
    """Regression: report.py once parsed `laion:` itself, so the `?text=DIR` option made the
    hash "random-init" and the label "dir"."""
    weights = tmp_path / "630k-audioset-best.pt"
    weights.write_bytes(b"abc")
    spec = f"laion:{weights}?text={tmp_path / 'dir'}"
    assert checkpoint_sha256(spec) == hashlib.sha256(b"abc").hexdigest()
    assert default_label(spec) == "630k-audioset-best"
    assert default_label(f"msclap:{tmp_path}/CLAP_weights_2022.pth?version=2022") == \
        "CLAP_weights_2022"


def test_headline_scores_carry_each_tasks_own_chance_and_interval(results):
    from teminal.evaluate.report import headline, headline_scores

    scores = headline_scores(results[0])
    m = results[0]["metrics"]
    assert list(scores) == list(headline(results[0]))
    assert scores["1 single"]["chance"] == m["task1_single"]["chance"] != 1 / 3
    assert scores["3 order"]["chance"] == pytest.approx(1 / 3, abs=1e-6)
    # a seen/unseen part inherits its task's chance; the order rows carry the order-blind ceiling
    assert scores["3 order, unseen pairs"]["chance"] == pytest.approx(1 / 3, abs=1e-6)
    assert scores["3 order, unseen pairs"]["order_blind_ceiling"] == 0.5
    assert scores["CompA group"]["chance"] == pytest.approx(1 / 6, abs=1e-6)
    assert all(len(s["ci95"]) == 2 for s in scores.values())


def test_bar_marks_give_the_interval_around_the_value():
    from teminal.evaluate.plots import bar_marks

    marks = bar_marks({"accuracy": 0.5, "ci95": [0.4, 0.7], "chance": 0.1})
    assert marks["below"] == pytest.approx(0.1) and marks["above"] == pytest.approx(0.2)
    assert marks["chance"] == 0.1 and marks["ceiling"] is None
    assert bar_marks({}) == {"value": None, "below": 0.0, "above": 0.0, "chance": None,
                             "ceiling": None}


def test_compare_plot_draws_intervals_each_tasks_chance_and_marks_missing_values(
        results, tmp_path, monkeypatch):
    from teminal.evaluate import plots

    partial = copy.deepcopy(results[1])
    del partial["metrics"]["template_generalisation"]   # no held-out wordings measured
    figures, real_save = [], plots._save

    def keep_figure(fig, path, plt):
        figures.append(fig)
        return real_save(fig, path, plt)

    monkeypatch.setattr(plots, "_save", keep_figure)
    path = plots.plot_compare([results[0], partial], ["base", "partial"], tmp_path / "c.png")
    assert path.read_bytes()[:8] == PNG
    (ax,) = figures[0].axes
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("n/a") == 1
    assert sum(1 for p in ax.patches if p.get_hatch() == "///") == 1
    levels = {round(float(seg[0][1]), 4) for c in ax.collections if hasattr(c, "get_segments")
              for seg in c.get_segments() if len(seg) == 2 and seg[0][1] == seg[1][1]}
    chances = {round(s["chance"], 4) for s in plots_scores(results[0]) if s.get("chance")}
    assert chances <= levels and 0.5 in levels and len(chances) > 2   # not 1/3 everywhere
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["base", "partial"] and "n/a: no value" in legend


def plots_scores(result):
    from teminal.evaluate.report import headline_scores

    return list(headline_scores(result).values())
