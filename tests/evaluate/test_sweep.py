"""ZSTE's timing sweep (`evaluate zste --junctions`, issue 25): task 3 and CompA-order on the
test groups re-rendered with the second event at other junctions, from the catalog's recipes and
the sources; its summary, the timing-robust order; how the table, `compare` and the plots show
it."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from coded import FakeModel, OrderBlindModel, make_testset
from teminal.evaluate.report import compare_table, format_table, new_result, write_result
from teminal.evaluate.testset import CatalogTestSet
from teminal.evaluate.training_data import TrainingData
from teminal.evaluate.zste import evaluate_zste, protocol
from teminal.testing import VOCAB, RandomModel

SR = 4000
SWEPT = ("accuracy", "n", "correct", "ci95", "chance")


def tiny_build(root, out, **timing):
    """Stage B of the synthetic set at 4 kHz, 1 s clips, 8 test groups (FLAC members)."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.config import BuildConfig

    run_build(BuildConfig(out=str(out), root=str(root), stages=("b",),
                          groups={"train": 2, "val": 1, "test": 8},
                          compose=ComposeConfig(sample_rate=SR, clip_seconds=1.0, **timing)),
              progress=False, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def builds(synthetic_esc50, tmp_path_factory):
    """The paper's midpoint and the same sources and seed built with --junction 0.3."""
    folder = tmp_path_factory.mktemp("sweep")
    return (tiny_build(synthetic_esc50, folder / "mid"),
            tiny_build(synthetic_esc50, folder / "j03", junction=0.3))


def zste(data, junctions=(), workers=0, **kwargs):
    testset = CatalogTestSet(data, **kwargs)
    model = RandomModel(vocab=testset.vocabulary, sample_rate=SR)
    return evaluate_zste(model, testset, progress=False, junctions=junctions, workers=workers)


def test_the_sweep_at_a_junction_equals_a_plain_zste_on_a_build_made_with_that_junction(builds):
    """The model hashes the samples, so equal figures and confusions mean equal audio bits."""
    mid, j03 = builds
    swept = zste(mid, junctions=(0.3, 0.5))["metrics"]
    points = {p["junction"]: p for p in swept["timing_sweep"]["points"]}
    for junction, data in ((0.3, j03), (0.5, mid)):
        plain = zste(data)["metrics"]
        point = points[junction]
        assert {k: point["order"][k] for k in SWEPT} == \
            {k: plain["task3_order"][k] for k in SWEPT}, junction
        assert point["confusion"] == plain["task3_order"]["confusion"], junction
        assert point["compa_order"] == {k: v for k, v in plain["compa_order"].items()
                                        if k != "description"}, junction
    assert points[0.3]["confusion"] != points[0.5]["confusion"]   # the junction mattered


def test_sweep_results_do_not_depend_on_the_worker_count(builds):
    serial, parallel = (zste(builds[0], junctions=(0.2, 0.5, 0.8), workers=w) for w in (0, 2))
    assert parallel["timing"]["decode"]["workers"] == 2
    assert json.dumps({k: serial[k] for k in ("metrics", "items")}, sort_keys=True) == \
        json.dumps({k: parallel[k] for k in ("metrics", "items")}, sort_keys=True)
    assert serial["items"]["swept_groups"] == 8


def test_the_timing_robust_order_is_the_lowest_held_out_order_over_the_junctions():
    """Coded sweep: at 0.3 a few held-out groups go wrong, at 0.7 more, at 0.5 none; the pairs
    with "dog" are the seen ones and never go wrong."""
    unseen = lambda g: "dog" not in (g.a, g.b)   # noqa: E731
    sweep = {0.3: lambda g: unseen(g) and g.a < "cow", 0.5: lambda g: False,
             0.7: lambda g: unseen(g) and g.a < "dog"}
    training = TrainingData(path="x", pairs={frozenset(("dog", c)) for c in VOCAB if c != "dog"},
                            template_ids=set())
    m = evaluate_zste(FakeModel(), make_testset(sweep=sweep), progress=False, training=training,
                      junctions=(0.7, 0.3, 0.5))["metrics"]
    points = m["timing_sweep"]["points"]
    assert [p["junction"] for p in points] == [0.3, 0.5, 0.7]
    worst = min(points, key=lambda p: p["order"]["unseen"]["accuracy"])
    robust = m["timing_sweep"]["timing_robust"]
    assert robust["junction"] == worst["junction"] == 0.7 and robust["pairs"] == "unseen"
    assert robust["order"]["accuracy"] == worst["order"]["unseen"]["accuracy"] < \
        points[0]["order"]["unseen"]["accuracy"] < points[1]["order"]["unseen"]["accuracy"] == 1.0
    assert worst["order"]["seen"]["accuracy"] == 1.0
    assert robust["compa_group"] == worst["compa_order"]["group"]
    assert m["task3_order"]["accuracy"] == 1.0   # the paper's protocol does not see any of it


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "nan", "abc", "", "0.2,,0.5",
                                   "0.5,0.5"])
def test_bad_junctions_are_refused_naming_the_option_before_the_model_loads(
        value, tmp_path, monkeypatch):
    from teminal.evaluate import cli

    monkeypatch.setattr(cli, "_load_model", lambda *a: pytest.fail("the model was loaded"))
    res = CliRunner().invoke(cli.main, ["zste", "--model", "small", "--data", str(tmp_path),
                                        "--out", str(tmp_path / "r.json"), "--junctions", value])
    assert res.exit_code == 2 and "--junctions" in res.output, res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("junctions", [(0.05, 0.5), (0.5, 0.95)])
def test_a_junction_that_leaves_an_event_too_short_is_refused_before_any_clip_is_embedded(
        builds, junctions):
    """In (0, 1) but too near an end for the 1 s clips (each event keeps 0.1 s)."""
    testset = CatalogTestSet(builds[0])
    model = RandomModel(vocab=testset.vocabulary, sample_rate=SR)
    bad = next(j for j in junctions if j != 0.5)
    with pytest.raises(ValueError, match=rf"^--junctions {bad:g}: .*too short in a 1 s clip; "
                                         r"choose junctions nearer 0\.5$"):
        evaluate_zste(model, testset, progress=False, junctions=junctions)
    assert model.audio_calls == 0


def test_moved_sources_stop_the_sweep_before_any_work_with_one_message(
        synthetic_esc50, tmp_path, monkeypatch):
    """The dataset moved after the build: the first missing file is named with the fix, before
    any clip is embedded; --root with its new folder finds every source."""
    from teminal.evaluate import cli

    shutil.copytree(synthetic_esc50, tmp_path / "src")
    out = tiny_build(tmp_path / "src", tmp_path / "out")
    (tmp_path / "src").rename(tmp_path / "moved")
    model = RandomModel(vocab=CatalogTestSet(out).vocabulary, sample_rate=SR)
    monkeypatch.setattr(cli, "_load_model", lambda *a: model)
    args = ["zste", "--model", "small", "--data", str(out), "--out", str(tmp_path / "r.json"),
            "--junctions", "0.3", "--quiet"]
    res = CliRunner().invoke(cli.main, args)
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert "the timing sweep renders esc50-b-test-000000.forward from its sources: source " \
           "esc50synth-5-" in res.output and f"is not at {tmp_path}/src/audio/5-" in res.output
    assert f"pass --root with the dataset's new folder (the build read it from {tmp_path}/src)" \
        in res.output
    assert model.audio_calls == 0    # refused before the first clip was embedded
    res = CliRunner().invoke(cli.main, [*args, "--root", str(tmp_path / "moved"),
                                        "--plots", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["items"]["swept_groups"] == 8 and "single: missing file" not in \
        result["items"]["skipped"]   # the singles found their sources under --root too
    assert (tmp_path / "p" / "timing_sweep_small.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------
# The table, `compare` and the plots

def swept_result(model, label):
    sweep = {0.2: lambda g: g.a > g.b, 0.5: lambda g: False, 0.8: lambda g: g.a < "cow"}
    training = TrainingData(path="x", pairs={frozenset(("dog", "siren"))}, template_ids=set())
    out = evaluate_zste(model, make_testset(sweep=sweep), progress=False, training=training,
                        junctions=sorted(sweep))
    return new_result("zste", spec="small", model=model, label=label, seed=0,
                      data={"path": "OUT", "dataset": "fake", "split": "test",
                            "catalog_build_id": "b123", "synthetic": True},
                      protocol=protocol("all", 0, "test", sorted(sweep)), metrics=out["metrics"],
                      items=out["items"], training_data=training.to_dict(), timing=out["timing"])


@pytest.fixture(scope="module")
def results():
    return [swept_result(OrderBlindModel(), "base"), swept_result(FakeModel(), "stage_b")]


def test_the_table_shows_the_timing_robust_order_beside_the_papers_and_the_sweep(results):
    text = format_table(results[1])
    lines = text.splitlines()
    order = next(i for i, line in enumerate(lines) if line.startswith("3 order (fwd+rev)"))
    assert lines[order + 4].startswith("3 order, timing-robust")   # after fwd / rev / ovl
    assert "timing-robust order: 0.750 on held-out pairs at junction 0.2, the worst of 0.2, " \
           "0.5, 0.8 (the paper's protocol, this build's own timing: 1.000)" in text
    assert "on 90 of 90 groups" in text
    sweep = [line.split() for line in lines if line.startswith("       0.")]
    assert [row[0] for row in sweep] == ["0.2", "0.5", "0.8"] and sweep[1][1] == "1.000"


def test_compare_prints_the_sweep_per_junction_and_each_models_timing_robust_order(
        results, tmp_path):
    from teminal.evaluate.cli import main

    text = compare_table(results, ["base", "stage_b"])
    lines = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    for j in ("0.2", "0.5", "0.8"):
        for row in (f"3 order @ junction {j}", f"3 order @ junction {j} [seen]",
                    f"3 order @ junction {j} [unseen]", f"CompA group @ junction {j}"):
            assert row in lines, row
    assert "+0.500" in lines["3 order @ junction 0.5"]   # blind 0.5, perfect 1.0
    assert "3 order, timing-robust" in lines
    assert "stage_b: timing-robust order: 0.750 on held-out pairs at junction 0.2" in text
    paths = [write_result(r, tmp_path / f"{r['label']}.json") for r in results]
    res = CliRunner().invoke(main, ["compare", *map(str, paths), "--plot",
                                    str(tmp_path / "cmp.png")])
    assert res.exit_code == 0 and "3 order @ junction 0.8 [unseen]" in res.output, res.output
    assert (tmp_path / "cmp_timing_sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_the_sweep_plot_draws_one_line_per_model_on_seen_and_held_out_pairs(
        results, tmp_path, monkeypatch):
    from teminal.evaluate import plots

    figures, real_save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, plt: (figures.append(fig),
                                                                real_save(fig, path, plt))[1])
    plots.plot_timing_sweep(results, ["base", "stage_b"], tmp_path / "s.png")
    seen, unseen = figures[0].axes
    assert [ax.get_title() for ax in (seen, unseen)] == ["class pairs seen in training",
                                                        "held-out class pairs"]
    for ax in (seen, unseen):
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["chance (1/3)", "order-blind ceiling", "the paper's midpoint", "base",
                          "stage_b"]
        levels = {round(line.get_ydata()[0], 4) for line in ax.lines
                  if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2}
        assert {0.3333, 0.5} <= levels
        assert len(ax.containers) == 2          # one errorbar line per model
    stage_b = plots.sweep_series(results[1], "unseen")
    assert stage_b["junction"] == [0.2, 0.5, 0.8] and stage_b["value"][1] == 1.0
    assert all(b >= 0 and a >= 0 for b, a in zip(stage_b["below"], stage_b["above"]))
