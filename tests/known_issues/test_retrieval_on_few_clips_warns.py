"""Issue 26.8: `evaluate retrieval --dataset clotho` with 7 of Clotho's 1,045 evaluation clips
present reported R@10 = 1.000 with no word that each caption was ranked among 7 clips. Below a
minimum coverage (half the split) the result now carries a warning, in its JSON (`warnings`,
`items.coverage`) and above the printed table."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from teminal.evaluate import cli
from teminal.evaluate import retrieval as R
from teminal.evaluate.report import compare_table, format_table, validate_result
from teminal.testing import RandomModel

SR = 8000
HEADER = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5"


def clotho_copy(tmp_path, listed: int, with_audio: int):
    """A Clotho layout whose evaluation split lists `listed` clips, `with_audio` of them present."""
    root = tmp_path / "clotho"
    audio = root / "clotho_audio_files" / "evaluation"
    audio.mkdir(parents=True)
    (root / "clotho_csv_files").mkdir()
    rows, rng = [HEADER], np.random.default_rng(0)
    for i in range(listed):
        rows.append(f"clip {i}.wav," + ",".join(f"sound {i} take {j}" for j in range(5)))
        if i < with_audio:
            sf.write(audio / f"clip {i}.wav", 0.3 * rng.standard_normal(SR), SR, subtype="PCM_16")
    (root / "clotho_csv_files" / "clotho_captions_evaluation.csv").write_text("\n".join(rows) + "\n")
    return root


def run(root, **kw):
    return R.run(RandomModel(sample_rate=SR, clip_samples=SR), "small", "clotho", root,
                 progress=False, **kw)


def test_a_split_mostly_missing_carries_a_warning_in_the_json_and_the_table(tmp_path):
    r = run(clotho_copy(tmp_path, listed=10, with_audio=3))
    assert validate_result(r) == []
    assert r["items"]["coverage"] == 0.3 and r["items"]["min_coverage"] == R.MIN_COVERAGE == 0.5
    (warning,) = r["warnings"]
    assert warning.startswith("only 3 of 10 clotho test clips evaluated (30.0%: 7 without audio")
    assert "minimum coverage of 50%" in warning and "ranked among 3 clips" in warning
    table = format_table(r).splitlines()
    header_end = next(i for i, line in enumerate(table) if line.startswith("metric"))
    assert f"WARNING: {warning}" in table[:header_end]  # above the figures, not after them
    assert "coverage 30.0%" in table[-2]
    assert f"WARNING (a): {warning}" in compare_table([r], ["a"])


def test_enough_clips_carry_no_warning(tmp_path):
    r = run(clotho_copy(tmp_path, listed=4, with_audio=2))
    assert r["warnings"] == [] and r["items"]["coverage"] == 0.5
    assert "WARNING" not in format_table(r)


def test_max_items_below_the_minimum_is_named_in_the_warning(tmp_path):
    r = run(clotho_copy(tmp_path, listed=6, with_audio=6), max_items=2)
    (warning,) = r["warnings"]
    assert "only 2 of 6" in warning and "--max-items 2" in warning


@pytest.mark.realdata
def test_real_clotho_with_7_of_1045_clips_warns_on_the_command_line(shared_data, tmp_path,
                                                                    monkeypatch):
    model = RandomModel(sample_rate=SR, clip_samples=10 * SR)
    monkeypatch.setattr(cli, "_load_model", lambda spec, device, seed: model)
    out = tmp_path / "r.json"
    args = ["retrieval", "--model", "small", "--dataset", "clotho", "--root",
            str(shared_data / "clotho"), "--out", str(out), "--workers", "0"]
    shown = CliRunner().invoke(cli.main, args)
    assert shown.exit_code == 0, shown.output
    assert "WARNING: only 7 of 1045 clotho test clips evaluated (0.7%: 1038 without audio" \
        in shown.output
    assert json.loads(out.read_text())["warnings"] == [
        line[len("WARNING: "):] for line in shown.output.splitlines() if line.startswith("WARNING")]
    quiet = CliRunner().invoke(cli.main, [*args, "--quiet"])
    assert quiet.exit_code == 0 and "WARNING: only 7 of 1045" in quiet.stderr
