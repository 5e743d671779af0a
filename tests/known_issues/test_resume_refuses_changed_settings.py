"""Issue 9.3: `--resume` with another `--where` continued after a warning (and final/config.json
then claimed the new `--where` for the whole run, so ZSTE's seen/unseen split was wrong); with
another `--lr` not even a warning. A resume now refuses any change of a data-defining or
optimiser setting, naming each, unless --resume-changed, which records both."""
from __future__ import annotations

import json

import pytest

from teminal.train.run_config import TrainConfig
from teminal.train.streaming import canonical_caption
from teminal.train.trainer import Stage, complete_checkpoints, run
from teminal.testing import toy_factory
from toy_clap import reference_info_nce


def loss(audio, text, scale, n_groups, cfg, positives=None):
    return reference_info_nce(audio, text, scale)


STAGE = Stage("toy_b", "b", ("forward", "reversed", "overlay"), loss, canonical_caption)


def config(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), max_steps=2, groups_per_batch=2, num_workers=0,
                lr=3e-3, save_every=1, log_every=1, tensorboard=False, progress=False, seed=1)
    return TrainConfig(**{**base, **kw})


@pytest.fixture()
def started(tiny_data, tmp_path):
    out = tmp_path / "run"
    run(config(tiny_data, out, where="NOT list_contains(labels, 'low hum')"), STAGE, toy_factory)
    assert complete_checkpoints(out)
    return out


@pytest.mark.parametrize("change,named", [
    (dict(where="list_contains(labels, 'rising chirp')"), "where"),
    (dict(where=None), "where"),
    (dict(lr=1e-2), "lr"),
    (dict(weight_decay=0.1), "weight_decay"),
    (dict(seed=2), "seed"),
    (dict(groups_per_batch=3), "groups_per_batch"),
    (dict(beta=0.5), "beta"),
    (dict(trainable=["audio_proj.*"]), "trainable"),
    (dict(split="val"), "split"),
])
def test_a_resume_with_changed_settings_is_refused_naming_the_setting(tiny_data, started, change,
                                                                      named):
    kw = {"where": "NOT list_contains(labels, 'low hum')", "resume": True, "max_steps": 4, **change}
    with pytest.raises(ValueError, match=rf"(?s)other settings:\n  {named}: .* -> .*--resume-changed"):
        run(config(tiny_data, started, **kw), STAGE, toy_factory)
    assert not (started / "final" / "model.safetensors").stat().st_size == 0


def test_several_changes_are_all_named(tiny_data, started):
    with pytest.raises(ValueError) as e:
        run(config(tiny_data, started, resume=True, max_steps=4, lr=1e-2, seed=7), STAGE,
            toy_factory)
    assert all(f"  {k}: " in str(e.value) for k in ("where", "lr", "seed"))


def test_a_changed_query_file_content_is_caught(tiny_data, tmp_path):
    query = tmp_path / "q.sql"
    query.write_text("SELECT group_key FROM samples WHERE NOT list_contains(labels, 'low hum')")
    out = tmp_path / "run"
    run(config(tiny_data, out, query_file=str(query)), STAGE, toy_factory)
    query.write_text("SELECT group_key FROM samples")
    with pytest.raises(ValueError, match="selected training groups differ"):
        run(config(tiny_data, out, query_file=str(query), resume=True, max_steps=4), STAGE,
            toy_factory)


def test_resume_changed_continues_and_records_both_settings(tiny_data, started):
    new_where = "list_contains(labels, 'low hum')"
    result = run(config(tiny_data, started, resume=True, resume_changed=True, max_steps=4,
                        where=new_where, lr=1e-2), STAGE, toy_factory)
    assert result.steps == 4
    extra = json.loads((started / "final" / "config.json").read_text())["extra"]
    assert extra["train_config"]["where"] == new_where
    (earlier,) = extra["earlier_train_configs"]
    assert earlier["until_step"] == 2
    assert earlier["train_config"]["where"] == "NOT list_contains(labels, 'low hum')"
    assert earlier["train_config"]["lr"] == 3e-3
    assert any(line.startswith("where:") for line in earlier["changed"])


def test_the_evaluator_unions_the_selections_of_a_changed_resume(tiny_data, started):
    from teminal.evaluate.training_data import resolve_training_data

    run(config(tiny_data, started, resume=True, resume_changed=True, max_steps=4,
               where="list_contains(labels, 'low hum')"), STAGE, toy_factory)

    class Model:
        config = json.loads((started / "final" / "config.json").read_text())

    pairs = resolve_training_data(Model()).pairs
    assert any("low hum" in p for p in pairs) and any("low hum" not in p for p in pairs)


@pytest.mark.parametrize("patterns", [["proj"], ["nothing.*"], ["re:xyz"]])
def test_trainable_patterns_matching_nothing_are_one_message(tiny_data, tmp_path, patterns):
    with pytest.raises(ValueError, match="matches no trainable parameter.*names look like"):
        run(config(tiny_data, tmp_path / "run", trainable=patterns), STAGE, toy_factory)


def test_an_unchanged_resume_still_continues(tiny_data, started):
    result = run(config(tiny_data, started, where="NOT list_contains(labels, 'low hum')",
                        resume=True, max_steps=3, save_every=5, log_every=2), STAGE, toy_factory)
    assert result.steps == 3


# Issue 23.6: a resume accepted data replaced under the same path (another seed, the same keys)
# and settings that change the loss (--retain-singles); `--resume --audio-head` was a traceback.
# The checkpoint records the build ids and the catalog's shard digest, and every setting but
# the machinery (run_config.RESUME_FREE) is compared, derived from the TrainConfig dataclass.

def test_every_setting_but_the_machinery_is_compared_on_resume():
    import dataclasses

    from teminal.train.run_config import RESUME_FREE, resume_keys

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert RESUME_FREE <= names, RESUME_FREE - names       # no stale machinery name
    assert set(resume_keys()) == names - RESUME_FREE
    assert {"retain_singles", "audio_head", "templates", "lambda_a", "beta", "alpha_same_time",
            "lr", "grad_clip", "trainable", "where", "seed", "mixed_precision"} <= set(resume_keys())


def test_a_setting_added_later_is_compared_unless_declared_machinery():
    import dataclasses

    from teminal.train.run_config import resume_keys

    @dataclasses.dataclass
    class Later(TrainConfig):
        new_loss_weight: float = 1.0

    assert "new_loss_weight" in resume_keys(Later)


@pytest.mark.parametrize("change,named", [
    (dict(retain_singles=1.0), "retain_singles"),
    (dict(templates=["paper"]), "templates"),
    (dict(lambda_a=0.5), "lambda_a"),
    (dict(alpha_same_overlap=2.0), "alpha_same_overlap"),
    (dict(num_workers=1), "num_workers"),
])
def test_loss_and_data_order_settings_are_compared(tiny_data, started, change, named):
    kw = {"where": "NOT list_contains(labels, 'low hum')", "resume": True, "max_steps": 4, **change}
    with pytest.raises(ValueError, match=rf"other settings:\n  {named}: "):
        run(config(tiny_data, started, **kw), STAGE, toy_factory)


def _rebuild(data, **build):
    """Build into `data` again (another seed, the same group keys) from the tiny build's
    sources."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.config import BuildConfig

    run_build(BuildConfig(out=str(data), root=str(data.parent / "src"), shard_size=4,
                          compose=ComposeConfig(sample_rate=16000, clip_seconds=2.0),
                          overwrite=True, **build), progress=False, log=lambda *_: None)


def _edit_catalog_sha256(data):
    import duckdb

    con = duckdb.connect(str(data / "manifests" / "catalog.duckdb"))
    con.execute("UPDATE shards SET sha256 = repeat('0', 64) WHERE path = (SELECT min(path) FROM "
                "shards WHERE stage = 'b' AND split = 'train')")
    con.close()


@pytest.mark.parametrize("replace,named", [
    (lambda d: _rebuild(d, seed=7), "data build"),        # another seed, the same keys
    (_edit_catalog_sha256, "data shards"),                 # same build id, other shard hashes
])
def test_a_resume_over_data_replaced_under_the_same_path_is_refused(tiny_data, tmp_path, replace,
                                                                    named):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    shutil.copytree(tiny_data.parent / "src", tmp_path / "src")
    out = tmp_path / "run"
    run(config(data, out), STAGE, toy_factory)
    replace(data)
    with pytest.raises(ValueError, match=rf"(?s)other settings:\n.*  {named}: .*--resume-changed"):
        run(config(data, out, resume=True, max_steps=3), STAGE, toy_factory)
    result = run(config(data, out, resume=True, resume_changed=True, max_steps=3), STAGE,
                 toy_factory)
    assert result.steps == 3
    history = json.loads((out / "settings_history.json").read_text())
    assert any(line.startswith(named) for line in history[-1]["changed"])


class ToyWithHead(__import__("teminal.testing", fromlist=["ToyClap"]).ToyClap):
    """The toy model with an --audio-head option: the head adds parameters, as laion's does."""

    supports_audio_head = True

    def add_audio_head(self, spec) -> bool:
        import torch

        self.head = torch.nn.Linear(4, 4)
        self.config["audio_head"] = spec
        return True


def head_factory(spec, device="cpu"):
    return ToyWithHead().to(device)


@pytest.mark.parametrize("resume_changed", [False, True])
def test_resume_with_an_audio_head_is_one_message_not_a_traceback(tiny_data, tmp_path,
                                                                  resume_changed):
    out = tmp_path / "run"
    run(config(tiny_data, out), STAGE, head_factory)
    with pytest.raises(ValueError, match="audio_head: None -> 'additive'"):
        run(config(tiny_data, out, resume=True, max_steps=3, audio_head="additive",
                   resume_changed=resume_changed), STAGE, head_factory)
