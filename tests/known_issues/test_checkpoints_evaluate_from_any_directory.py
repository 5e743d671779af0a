"""Issue 24.3: training reached evaluation through strings. A checkpoint recorded the path it
was initialised from relative to the folder its trainer ran in, so `evaluate zste --model
runs/demo/stage_b/final` run from anywhere else failed ("model 'runs/demo/stage_a/final' needs
1 missing file"); and the evaluator re-derived what each stage trained on from the stage's name
and re-ran the trainer's SQL from a query file that may have changed since. The checkpoint's
TrainingProvenance now carries the relations each stage trained on, its selection with the
query's text, and absolute paths; a legacy relative init is looked for above the checkpoint."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from teminal.testing import RandomModel, toy_factory
from teminal.train.run_config import TrainConfig
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import Stage, run
from toy_clap import reference_info_nce

HELD_OUT = "low hum"
# stage B's selection, as a query: groups none of whose rows names the held-out class
QUERY = (f"SELECT group_key FROM samples GROUP BY group_key "
         f"HAVING NOT bool_or(list_contains(labels, '{HELD_OUT}'))")


def loss(audio, text, scale, n_groups, cfg, positives=None):
    return reference_info_nce(audio, text, scale)


STAGE_A = Stage("stage_a", "a", ("single", "double"), loss, canonical_caption)
STAGE_B = Stage("stage_b", "b", ("forward", "reversed", "overlay"), loss, canonical_caption)


@pytest.fixture(scope="module")
def project(tiny_data, tmp_path_factory) -> Path:
    """A project folder trained the way the demo does, with paths relative to it: stage A
    into runs/a (--where), then stage B into runs/b from --init runs/a (--query-file q.sql)."""
    from accelerate.state import AcceleratorState, GradientState

    root = tmp_path_factory.mktemp("project")
    (root / "q.sql").write_text(QUERY)
    common = dict(data=str(tiny_data), max_steps=1, groups_per_batch=2, num_workers=0,
                  save_every=0, log_every=1, tensorboard=False, progress=False)
    before = Path.cwd()
    os.chdir(root)
    try:
        run(TrainConfig(out="runs/a", where=f"NOT list_contains(labels, '{HELD_OUT}')",
                        **common), STAGE_A, toy_factory)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        run(TrainConfig(out="runs/b", init="runs/a", query_file="q.sql", **common), STAGE_B,
            toy_factory)
    finally:
        os.chdir(before)
    return root


@pytest.fixture()
def copy(project, tmp_path) -> Path:
    return Path(shutil.copytree(project, tmp_path / "project"))


def zste(final: Path, data, cwd: Path, tmp_path: Path, monkeypatch) -> dict:
    """`evaluate zste --model FINAL` run in `cwd` (the model's weights stand aside: a random
    model carrying the checkpoint's config, which is all the evaluator reads of it here)."""
    from teminal.evaluate import cli

    model = RandomModel(vocab=["a", "b"], sample_rate=16000, clip_samples=32000)
    model.config = json.loads((final / "config.json").read_text())
    monkeypatch.setattr(cli, "_load_model", lambda spec, device, seed: model)
    monkeypatch.chdir(cwd)
    out = tmp_path / "zste.json"
    result = CliRunner().invoke(cli.main, ["zste", "--model", str(final), "--data", str(data),
                                           "--out", str(out), "--quiet", "--max-items", "2"])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["training_data"]


def pairs_of(final: Path, cwd: Path):
    """The seen pairs the evaluator gathers for the checkpoint, from `cwd`."""
    from teminal.evaluate.training_data import resolve_training_data

    class Model:
        config = json.loads((final / "config.json").read_text())

    before = Path.cwd()
    os.chdir(cwd)
    try:
        return resolve_training_data(Model(), near=final)
    finally:
        os.chdir(before)


def set_init(final: Path, init: str) -> None:
    config = json.loads((final / "config.json").read_text())
    config["extra"]["init"] = init
    (final / "config.json").write_text(json.dumps(config))


def test_the_provenance_records_absolute_paths_relations_and_the_query_text(project):
    extra = json.loads((project / "runs/b/final/config.json").read_text())["extra"]
    assert extra["init"] == str(project / "runs/a/final")
    assert Path(extra["data"]).is_absolute()
    assert extra["relations"] == ["forward", "reversed", "overlay"]
    assert extra["selection"]["query"] == QUERY
    assert extra["selection"]["query_file"] == str(project / "q.sql")
    assert len(extra["selection_sha256"]) == 64


@pytest.mark.parametrize("cwd", ["elsewhere", "runs", "runs/b/final"])
def test_a_checkpoint_evaluates_from_another_directory(copy, tiny_data, tmp_path, monkeypatch,
                                                       cwd):
    (copy / cwd).mkdir(parents=True, exist_ok=True)
    data = zste(copy / "runs/b/final", tiny_data, copy / cwd, tmp_path, monkeypatch)
    assert data["available"] and "note" not in data, data
    assert [link["stage"] for link in data["chain"]] == ["stage_b", "stage_a"]


@pytest.mark.parametrize("init", ["runs/a/final", "runs/a"])
def test_a_legacy_relative_init_is_found_above_the_checkpoint(copy, tiny_data, tmp_path,
                                                              monkeypatch, init):
    set_init(copy / "runs/b/final", init)   # as trainers recorded it: relative to their cwd
    (tmp_path / "elsewhere").mkdir()
    data = zste(copy / "runs/b/final", tiny_data, tmp_path / "elsewhere", tmp_path, monkeypatch)
    assert [link["stage"] for link in data["chain"]] == ["stage_b", "stage_a"]


@pytest.mark.parametrize("recorded", ["absolute", "relative"])
def test_an_init_that_is_gone_ends_the_chain_instead_of_failing(copy, tiny_data, tmp_path,
                                                                 monkeypatch, recorded):
    set_init(copy / "runs/b/final",
             str(copy / "runs/a/final") if recorded == "absolute" else "runs/a/final")
    shutil.rmtree(copy / "runs/a")
    data = zste(copy / "runs/b/final", tiny_data, copy, tmp_path, monkeypatch)
    assert data["available"] and [link["stage"] for link in data["chain"]] == ["stage_b"]


@pytest.mark.parametrize("query_file_now", ["SELECT group_key FROM samples", None])
def test_the_recorded_query_text_decides_not_the_file_as_it_is_now(copy, query_file_now):
    final = copy / "runs/b/final"
    trained = pairs_of(final, copy).pairs
    assert trained and not any(HELD_OUT in p for p in trained)
    if query_file_now is None:
        (copy / "q.sql").unlink()
    else:
        (copy / "q.sql").write_text(query_file_now)   # would select the held-out pairs too
    again = pairs_of(final, copy)
    assert again.pairs == trained and again.note is None


def test_a_legacy_checkpoint_without_relations_or_query_text_still_resolves(copy):
    """Written before the provenance carried them: the stage's relations by its name, the
    selection from train_config, its query file read as it is now."""
    final = copy / "runs/b/final"
    config = json.loads((final / "config.json").read_text())
    for key in ("relations", "selection", "selection_sha256", "earlier_selections"):
        del config["extra"][key]
    (final / "config.json").write_text(json.dumps(config))
    data = pairs_of(final, copy)
    assert data.pairs and not any(HELD_OUT in p for p in data.pairs)
