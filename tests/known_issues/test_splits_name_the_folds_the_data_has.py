"""Issue 26.5: `--splits test=6,train=1` on ESC-50 (folds 1-5) built nothing for the test split
and exited 0 ("split test: no usable clip ...; skipped"), and the default layout on a partial
copy (the 113-clip esc50-real has 2 fold-5 clips of one class) skipped its test split with a
note that did not say how to choose folds. A split or fold the data does not have is now an
error naming the ones it has, before any work; a default layout that leaves a split without a
pair is an error naming the clips per fold and a --splits that works."""
from __future__ import annotations

import csv
import shutil

import pytest
from click.testing import CliRunner

from build_helpers import quick_build
from teminal.pipeline.cli import main


def build_args(root, out, *extra):
    return ["build", "--root", str(root), "--out", str(out), "--no-progress", *extra]


@pytest.mark.parametrize("splits,named", [
    ("test=6,train=1", "no clip of"),           # a fold ESC-50 does not have
    ("test=1,6,train=2", "fold 6;"),           # ... beside one it has
    ("tset=5,train=1", "'tset' is not one of train, val, test"),
    ("test=,train=1", "name the fold(s) of split 'test'"),
])
def test_a_split_or_fold_the_data_lacks_is_refused_before_any_work(small_source, tmp_path,
                                                                   splits, named):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, build_args(small_source, out, "--splits", splits))
    assert result.exit_code != 0 and named in result.output, result.output
    assert "Traceback" not in result.output
    if "tset" not in splits:
        assert "are 1, 2, 3, 4, 5" in " ".join(result.output.split())
    assert not out.exists(), "work started before --splits was checked"


def partial_copy(source, tmp_path, keep):
    """A copy of `source` with only the CSV rows for which keep(fold, category) holds."""
    root = tmp_path / "partial"
    shutil.copytree(source, root)
    csv_file = root / "meta" / "esc50.csv"
    with open(csv_file, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(csv_file, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if keep(int(r["fold"]), r["category"]))
    return root


def test_a_split_whose_folds_a_partial_copy_lacks_is_refused(small_source, tmp_path):
    root = partial_copy(small_source, tmp_path, lambda fold, _: fold != 1)
    out = tmp_path / "out"
    lacking = CliRunner().invoke(main, build_args(root, out, "--splits", "test=1,train=2,3"))
    assert lacking.exit_code != 0 and "fold 1; its folds are 2, 3, 4, 5" in lacking.output
    assert not out.exists()


def test_a_default_layout_that_leaves_test_without_a_pair_says_how_to_choose_folds(
        small_source, tmp_path):
    # fold 5 keeps one class only: the default test split (fold 5) cannot make a pair
    root = partial_copy(small_source, tmp_path,
                        lambda fold, category: fold != 5 or category == "rising_chirp")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, build_args(root, out))
    assert result.exit_code != 0 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert "leave split test without a pair: fold 5" in message and "1 clip of 1 class" in message
    assert "Clips per fold here: 1: 3 clips of 3 classes;" in message
    assert "Choose folds with --splits, e.g. --splits test=1,val=2,train=3,4,5" in message
    assert not out.exists()
    # the suggested layout builds
    summary = quick_build(root, out, splits={"test": [1], "val": [2], "train": [3, 4, 5]})
    assert summary.catalog and not summary.notes


def test_the_real_partial_esc50_gets_a_layout_that_builds(esc50_real):
    from teminal.pipeline.sources import esc50

    with pytest.raises(ValueError) as e:
        esc50.check_splits(esc50_real, None)
    message = str(e.value)
    assert "split test without a pair: fold 5" in message and "2 clips of 1 class" in message
    assert message.endswith("--splits test=2,train=3,4,5")
    esc50.check_splits(esc50_real, {"test": [2], "train": [3, 4, 5]})
    esc50.check_splits(esc50_real, {"train": [1, 2, 3, 4, 5]})  # "everything there is"


def test_captioned_datasets_refuse_unknown_split_names_before_any_work(tmp_path):
    root = tmp_path / "clotho"
    (root / "clotho_csv_files").mkdir(parents=True)
    (root / "clotho_csv_files" / "clotho_captions_evaluation.csv").write_text(
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--dataset", "clotho", "--root", str(root),
                                       "--out", str(out), "--splits", "test=holdout"])
    assert result.exit_code != 0 and "unknown split 'holdout'; choose from" in result.output
    assert not out.exists()
