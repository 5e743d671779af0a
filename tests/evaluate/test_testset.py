"""`evaluate zste` on a real (tiny) pipeline build: test items, provenance, CLI, plots."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from coded import OracleModel
from teminal.testing import RandomModel, wave_key
from teminal.evaluate.report import load_result, validate_result
from teminal.evaluate.testset import CatalogTestSet, group_of
from teminal.evaluate.training_data import load_training_data, resolve_training_data
from teminal.evaluate.zste import evaluate_zste


@pytest.fixture(scope="module")
def build(synthetic_esc50, tmp_path_factory):
    """A stage A+B build of the synthetic set: 4 kHz, 1 s composites, 24 test groups."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.compose import ComposeConfig

    out = tmp_path_factory.mktemp("zste-build") / "out"
    config = BuildConfig(out=str(out), root=str(synthetic_esc50), codec="pcm",
                         groups={"train": 30, "val": 2, "test": 24},
                         compose=ComposeConfig(sample_rate=4000, clip_seconds=1.0))
    summary = run_build(config, progress=False, log=lambda *a: None)
    return out, summary.build_id


def oracle_for(testset: CatalogTestSet) -> OracleModel:
    """A model told the true content of every test waveform, from the shard JSON rows (whose
    labels are in temporal order) and the single items."""
    from teminal.pipeline.shards import iter_groups

    index = {c: i for i, c in enumerate(testset.vocabulary)}
    concepts = {}
    for meta, waves in iter_groups(testset.shards):
        for row in meta["samples"]:
            x, y = (index[label] for label in row["labels"])
            kind = "overlay" if row["relation"] == "overlay" else "order"
            concepts[wave_key(waves[row["relation"]])] = (kind, x, y)
    for item, wave in testset.singles():
        concepts[wave_key(wave)] = ("class", index[item.label])
    return OracleModel(testset.vocabulary, testset.sample_rate, concepts)


def test_catalog_test_set(build):
    out, build_id = build
    ts = CatalogTestSet(out)
    assert len(ts.vocabulary) == 12 and ts.sample_rate == 4000 and ts.num_samples == 4000
    assert ts.info.synthetic is True and ts.info.build_id == build_id
    groups = list(ts.groups())
    assert len(groups) == 24
    for group, waves in groups:
        assert group.a != group.b and set(waves) == {"forward", "reversed", "overlay"}
        assert all(w.shape == (4000,) for w in waves.values())
    singles = list(ts.singles())
    assert len(singles) == 24                       # fold 5: 12 classes x 2 clips, each once
    assert len({s.key for s, _ in singles}) == 24
    assert len(list(CatalogTestSet(out, max_items=3).groups())) == 3


def test_oracle_scores_one_through_the_catalog(build):
    """The evaluator's reading of a group (a, b from the forward row; reversed = b then a)
    agrees with the shard rows: a model that knows the truth scores 1.0 everywhere."""
    out, _ = build
    ts = CatalogTestSet(out)
    m = evaluate_zste(oracle_for(ts), ts, progress=False)["metrics"]
    for task in ("task1_single", "task2_mixture", "task3_order", "task4_compositional",
                 "task5_position"):
        assert m[task]["accuracy"] == 1.0, task
    assert m["compa_order"]["group"]["accuracy"] == 1.0


def test_training_pairs_from_the_catalog(build):
    out, build_id = build
    data = load_training_data(out)
    assert data.available and data.build_id == build_id
    assert data.pairs and all(len(p) == 2 for p in data.pairs)
    assert {"paper.before", "paper.while"} <= data.template_ids


def test_training_data_from_checkpoint_extra(build, tmp_path):
    out, build_id = build
    model = RandomModel(vocab=["a", "b"])
    model.config = {"extra": {"data": str(out), "catalog_build_id": build_id}}
    data = resolve_training_data(model)
    assert data.available and data.note is None
    model.config = {"extra": {"data": str(out), "catalog_build_id": "other"}}
    assert "other" in resolve_training_data(model).note
    model.config = {"extra": {"data": str(tmp_path / "gone")}}
    gone = resolve_training_data(model)
    assert not gone.available and "--train-data" in gone.reason
    model.config = {}
    assert not resolve_training_data(model).available
    assert resolve_training_data(model, train_data=out).available


def test_training_chain_follows_init_and_selection(build, tmp_path):
    """stage B <- stage A <- pretrain, each run restricted by its recorded `where`: a class
    kept out of both pair stages never appears in a seen pair; pretraining adds no pair."""
    import json

    out, build_id = build
    # a group is kept only when every row matches (teminal.manifests.catalog.select_group_keys)
    where = "NOT list_contains(labels, 'siren')"

    def checkpoint(name, stage, init, where=None):
        folder = tmp_path / name / "final"
        folder.mkdir(parents=True)
        extra = {"stage": stage, "init": init, "data": str(out), "build_id": build_id,
                 "train_config": {"split": "train", "where": where, "templates": None}}
        (folder / "config.json").write_text(json.dumps({"extra": extra}))
        return folder, extra

    pre, _ = checkpoint("pre", "pretrain", "small")
    run_a, _ = checkpoint("a", "stage_a", str(pre.parent), where)       # a run dir: final/ inside
    _, extra_b = checkpoint("b", "stage_b", str(run_a), where)
    model = RandomModel(vocab=["a", "b"])
    model.config = {"extra": extra_b}
    data = resolve_training_data(model)
    assert data.available and [c["stage"] for c in data.chain] == ["stage_b", "stage_a", "pretrain"]
    assert data.pairs and not any("siren" in p for p in data.pairs)
    # canonical captions of the relations each stage reads
    assert data.template_ids == {"paper.before", "paper.while", "paper.combined", "paper.single"}
    everything = load_training_data(out)
    assert any("siren" in p for p in everything.pairs)
    only_pretrain = RandomModel(vocab=["a", "b"])
    only_pretrain.config = {"extra": json.loads((pre / "config.json").read_text())["extra"]}
    assert resolve_training_data(only_pretrain).pairs == set()


def test_group_without_forward_member_is_skipped():
    assert group_of({"group_key": "g", "samples": [{"relation": "overlay", "labels": ["a", "b"]}]}) is None
    g = group_of({"group_key": "g", "samples": [{"relation": "forward", "labels": ["a", "b"]}]})
    assert (g.a, g.b) == ("a", "b")


def test_missing_shards_say_how_to_fix(build, tmp_path):
    out, _ = build
    copy = tmp_path / "copy"
    shutil.copytree(out / "manifests", copy / "manifests")
    with pytest.raises(FileNotFoundError, match="missing"):
        CatalogTestSet(copy)


def _cli(monkeypatch, model, args):
    from teminal.evaluate import cli

    monkeypatch.setattr(cli, "_load_model", lambda spec, device, seed: model)
    return CliRunner().invoke(cli.main, args, catch_exceptions=False)


def test_cli_zste_writes_result_and_plot(build, tmp_path, monkeypatch):
    out, build_id = build
    model = oracle_for(CatalogTestSet(out))
    result_path = tmp_path / "zste_stage_b.json"
    res = _cli(monkeypatch, model, ["zste", "--model", "small", "--data", str(out), "--out",
                                    str(result_path), "--train-data", str(out), "--label",
                                    "stage_b", "--plots", str(tmp_path / "plots"), "--quiet"])
    assert res.exit_code == 0, res.output
    result = load_result(result_path)
    assert validate_result(result) == []
    assert result["command"] == "zste" and result["label"] == "stage_b"
    assert result["model"] == {"spec": "small", "family": "test-double",
                               "checkpoint_sha256": "random-init",
                               "train_stage": None, "train_catalog_build_id": None,
                               "train_data": None, "sample_rate": 4000}
    assert result["data"]["catalog_build_id"] == build_id and result["data"]["synthetic"] is True
    assert result["data"]["dataset"] == "esc50-synthetic"
    assert result["training_data"]["available"] is True
    order = result["metrics"]["task3_order"]
    assert order["accuracy"] == 1.0 and "seen" in order and "unseen" in order
    assert result["timing"]["clips_per_s"] > 0
    png = tmp_path / "plots" / "order_confusion_stage_b.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_zste_is_deterministic(build, tmp_path, monkeypatch):
    out, _ = build
    results = []
    for i, batch in enumerate((8, 32)):
        path = tmp_path / f"r{i}.json"
        res = _cli(monkeypatch, RandomModel(vocab=CatalogTestSet(out).vocabulary, sample_rate=4000),
                   ["zste", "--model", "small", "--data", str(out), "--out", str(path),
                    "--batch-size", str(batch), "--seed", "7", "--quiet"])
        assert res.exit_code == 0, res.output
        results.append(json.loads(path.read_text()))
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["training_data"]["available"] is False    # nothing recorded, no --train-data


def test_cli_zste_bad_data_folder(tmp_path, monkeypatch):
    res = _cli(monkeypatch, RandomModel(), ["zste", "--model", "small", "--data", str(tmp_path),
                                            "--out", str(tmp_path / "r.json")])
    assert res.exit_code != 0 and "pipeline build" in res.output


def test_singles_fall_back_to_stage_a_shards(build, tmp_path):
    """Regression: a build whose source clips moved away still has a task 1 (from the stage-A
    single members of its test shards) instead of n = 0."""
    out, _ = build
    ts = CatalogTestSet(out)
    ts._sources = [dict(r, path=str(tmp_path / "moved.wav")) for r in ts._sources]
    singles = list(ts.singles())
    assert len(singles) > 0 and len({s.key for s, _ in singles}) == len(singles)
    assert ts.skipped["single: missing file"] == 24
    assert all(w.shape == (4000,) for _, w in singles)


@pytest.mark.slow
def test_real_small_model_checkpoint(build, tmp_path):
    """The adapter's small model saved as a project checkpoint with the trainer's extra: the
    CLI loads it, hashes model.safetensors and reads seen pairs from the recorded catalog."""
    from teminal.evaluate import cli
    from teminal.evaluate.report import file_sha256
    from teminal.models import TrainingProvenance, load_model

    out, build_id = build
    final = tmp_path / "run_b" / "final"
    load_model("small").save(final, TrainingProvenance(
        stage="stage_b", init="small", data=str(out), build_id=build_id,
        train_config={"split": "train"}))
    path = tmp_path / "r.json"
    res = CliRunner().invoke(cli.main, ["zste", "--model", str(final), "--data", str(out),
                                        "--out", str(path), "--max-items", "6", "--quiet"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    r = load_result(path)
    assert r["model"]["checkpoint_sha256"] == file_sha256(final / "model.safetensors")
    assert r["model"]["train_catalog_build_id"] == build_id and r["label"] == "run_b"
    assert r["training_data"]["available"] and "seen" in r["metrics"]["task3_order"]
    assert r["items"] == {"singles": 6, "groups": 6, "classes": 12, "skipped": {}}


def test_zste_with_decode_workers_gives_the_serial_numbers(build, tmp_path):
    """Same JSON metrics, items and skip counts to the last digit with 0 and 2 decode workers,
    and the decode rate per worker is reported."""
    out, _ = build
    results = []
    for workers in (0, 2):
        ts = CatalogTestSet(out, max_items=20)
        model = RandomModel(vocab=ts.vocabulary, sample_rate=4000)
        r = evaluate_zste(model, ts, batch_size=8, progress=False, workers=workers)
        results.append(r)
        assert r["timing"]["decode"]["workers"] == workers
        assert r["timing"]["decode"]["clips"] == 20 + 3 * 20
        assert r["timing"]["decode"]["clips_per_s_per_worker"] > 0
    serial, parallel = (json.dumps({k: r[k] for k in ("metrics", "items")}, sort_keys=True)
                        for r in results)
    assert serial == parallel


def test_cli_zste_workers_option(build, tmp_path, monkeypatch):
    out, _ = build
    path = tmp_path / "r.json"
    res = _cli(monkeypatch, RandomModel(vocab=CatalogTestSet(out).vocabulary, sample_rate=4000),
               ["zste", "--model", "small", "--data", str(out), "--out", str(path),
                "--workers", "1", "--max-items", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(path.read_text())["timing"]["decode"]["workers"] == 1
