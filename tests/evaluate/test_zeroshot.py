"""ESC-50 zero-shot classification: protocol, per-fold results, real and synthetic folders."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from coded import OracleModel
from teminal.testing import RandomModel, wave_key
from teminal.evaluate import zeroshot as ZS
from teminal.evaluate.embed import windows
from teminal.evaluate.report import load_result, validate_result

SR = 8000
CLIP = 10 * SR


@pytest.fixture(scope="module")
def oracle(synthetic_esc50):
    """Told the label of every clip (by the hash of the window it will be given)."""
    from teminal.pipeline.audio import load_source

    every, _, _, _ = ZS.scan_esc50(synthetic_esc50, ZS.ALL_FOLDS)
    vocab = sorted({c.label for c in every})
    concepts = {}
    for clip in every:
        for w in windows(load_source(clip.path, SR), CLIP, ZS.FILL):
            concepts[wave_key(w)] = ("class", vocab.index(clip.label))
    return OracleModel(vocab, SR, concepts, clip_samples=CLIP)


def test_parse_folds():
    assert ZS.parse_folds("all") == (1, 2, 3, 4, 5)
    assert ZS.parse_folds("2,1") == (1, 2)
    for bad in ("0", "6", "x", ""):
        with pytest.raises(ValueError):
            ZS.parse_folds(bad)


def test_all_folds_per_fold(oracle, synthetic_esc50):
    r = ZS.run(oracle, "small", synthetic_esc50, ZS.ALL_FOLDS, progress=False)
    assert validate_result(r) == []
    m = r["metrics"]
    assert sorted(m["folds"]) == ["1", "2", "3", "4", "5"]
    assert all(f["accuracy"] == 1.0 and f["n"] == 24 for f in m["folds"].values())
    assert m["all"]["n"] == 120 and m["all"]["accuracy"] == 1.0 and m["all"]["top5"] == 1.0
    assert m["all"]["chance"] == pytest.approx(1 / 12, abs=1e-6)
    assert r["data"]["synthetic"] is True and r["data"]["dataset"] == "esc50-synthetic"
    assert r["protocol"]["prompt"] == "This is a sound of {label}."
    assert "MS-CLAP" in r["protocol"]["description"]


def test_fold_one_protocol(oracle, synthetic_esc50):
    r = ZS.run(oracle, "small", synthetic_esc50, (1,), progress=False)
    assert list(r["metrics"]["folds"]) == ["1"] and r["metrics"]["all"]["n"] == 24
    assert "LAION-CLAP" in r["protocol"]["description"]


def test_random_model_is_near_chance(synthetic_esc50):
    r = ZS.run(RandomModel(sample_rate=SR, clip_samples=CLIP), "small", synthetic_esc50, progress=False)
    assert r["metrics"]["all"]["accuracy"] < 0.3        # chance 1/12, n = 120


def test_cli_zeroshot(oracle, synthetic_esc50, tmp_path, monkeypatch):
    from teminal.evaluate import cli

    monkeypatch.setattr(cli, "_load_model", lambda spec, device, seed: oracle)
    out = tmp_path / "zs.json"
    res = CliRunner().invoke(cli.main, ["zeroshot", "--model", "small", "--dataset", "esc50",
                                        "--root", str(synthetic_esc50), "--out", str(out),
                                        "--folds", "1,2"])
    assert res.exit_code == 0, res.output
    assert "fold 1" in res.output and "all folds" in res.output
    assert load_result(out)["metrics"]["all"]["n"] == 48
    res = CliRunner().invoke(cli.main, ["zeroshot", "--model", "small", "--root",
                                        str(synthetic_esc50), "--out", str(out), "--folds", "9"])
    assert res.exit_code != 0 and "folds" in res.output


@pytest.mark.realdata
def test_real_esc50_subset(esc50_real):
    """The real subset has no fold-1 clip: say so and name the folds present; all folds run."""
    model = RandomModel(sample_rate=SR, clip_samples=CLIP)
    with pytest.raises(ValueError, match=r"folds present: \[2, 3, 4, 5\]"):
        ZS.run(model, "small", esc50_real, (1,), progress=False)
    r = ZS.run(model, "small", esc50_real, ZS.ALL_FOLDS, progress=False)
    assert r["metrics"]["all"]["n"] == 113 and r["items"]["classes"] == 50
    assert r["data"]["synthetic"] is False and r["data"]["dataset"] == "esc50"


def test_decode_workers_give_the_serial_numbers(synthetic_esc50):
    results = [ZS.run(RandomModel(sample_rate=SR, clip_samples=CLIP), "small", synthetic_esc50,
                      (1, 2), batch_size=7, progress=False, workers=w) for w in (0, 2)]
    assert json.dumps(results[0]["metrics"]) == json.dumps(results[1]["metrics"])
    assert results[0]["items"] == results[1]["items"]
    assert [r["timing"]["decode"]["workers"] for r in results] == [0, 2]
