"""Issue 23.10 (CSV part): a 1 MB field in an ESC-50, Clotho or AudioCaps CSV stopped the scan
with `field larger than field limit (131072)`, naming no file. The readers' one CSV parser
(`captioned.parse_csv`) sets the limit itself (CSV_FIELD_LIMIT, restored afterwards): a longer
field makes its row a reject naming the file and line, the rows after it are read as usual, and
a header that cannot be read is one error naming the file."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from teminal.pipeline.cli import main
from teminal.pipeline.sources import audiocaps, clotho, esc50
from teminal.pipeline.sources.captioned import CSV_FIELD_LIMIT

BIG = "x" * 1_000_000


def wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)


def esc50_root(tmp_path, big_row: str, big_header: bool = False) -> Path:
    root = tmp_path / "esc"
    header = ",".join(esc50.OFFICIAL_HEADER) + (BIG if big_header else "")
    rows = ["a.wav,1,0,dog,False,1,A", big_row, "b.wav,1,1,cat,False,2,A"]
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text("\n".join([header, *rows]) + "\n")
    for name in ("a.wav", "b.wav"):
        wav(root / "audio" / name)
    return root


ESC50_ROWS = {
    "huge file name": f"{BIG}.wav,1,0,dog,False,1,A",
    "huge category": f"c.wav,1,0,{BIG},False,1,A",
    "huge quoted field over two lines": f'c.wav,1,0,"{BIG[:500_000]}\n{BIG[:500_000]}",False,1,A',
}


@pytest.mark.parametrize("case", list(ESC50_ROWS))
def test_esc50_row_with_a_huge_field_is_a_reject_naming_its_line(tmp_path, case):
    scan = esc50.scan(esc50_root(tmp_path, ESC50_ROWS[case]))
    assert sorted(c.label for c in scan.clips) == ["cat", "dog"]   # the rows around it are read
    # (a huge quoted field over two lines leaves its second line a reject of its own)
    reject, *spill = [r for r in scan.rejects if "longer than" in r.reason]
    assert "meta/esc50.csv line 3" in reject.reason and len(spill) <= 1
    assert f"a field longer than {CSV_FIELD_LIMIT} characters" in reject.reason
    assert len(reject.path) < 1000


def clotho_root(tmp_path, big: list[str]) -> Path:
    root = tmp_path / "clotho"
    path = root / "clotho_csv_files" / "clotho_captions_evaluation.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(clotho.HEADER)
        w.writerow(["a.wav"] + [f"a dog barks {k}" for k in range(5)])
        w.writerow(big)
        w.writerow(["b.wav"] + [f"rain falls {k}" for k in range(5)])
    for name in ("a.wav", "b.wav"):
        wav(root / "clotho_audio_files" / "evaluation" / name)
    return root


@pytest.mark.parametrize("big", [["c.wav", BIG, "x", "x", "x", "x"], [BIG + ".wav"] + ["c"] * 5],
                         ids=["huge caption", "huge file name"])
def test_clotho_row_with_a_huge_field_is_a_reject_naming_file_and_line(tmp_path, big):
    scan = clotho.scan(clotho_root(tmp_path, big), progress=False)
    assert len(scan.clips) == 2
    (reject,) = [r for r in scan.rejects if "longer than" in r.reason]
    assert reject.path.endswith("clotho_captions_evaluation.csv:3")
    assert "malformed row at line 3" in reject.reason


@pytest.mark.parametrize("big", [["1", "yt1", "0", BIG], ["1", BIG, "0", "a caption"]],
                         ids=["huge caption", "huge youtube id"])
def test_audiocaps_row_with_a_huge_field_is_a_reject_naming_file_and_line(tmp_path, big):
    root = tmp_path / "ac"
    root.mkdir()
    with open(root / "test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(audiocaps.HEADER)
        w.writerow(["2", "yt2", "30", "a dog barks"])
        w.writerow(big)
    wav(root / "audio" / "test" / "yt2_30.wav")
    scan = audiocaps.scan(root, progress=False)
    assert [c.source_id for c in scan.clips] == ["audiocaps-yt2_30"]
    (reject,) = [r for r in scan.rejects if "longer than" in r.reason]
    assert reject.path.endswith("test.csv:3")


@pytest.mark.parametrize("reader", ["esc50", "clotho"])
def test_a_header_with_a_huge_field_is_one_error_naming_the_file(tmp_path, reader):
    if reader == "esc50":
        root = esc50_root(tmp_path, "c.wav,1,0,dog,False,1,A", big_header=True)
        expected = "esc50.csv: the header line cannot be read"
    else:
        root = clotho_root(tmp_path, ["c.wav"] + ["c"] * 5)
        path = root / "clotho_csv_files" / "clotho_captions_evaluation.csv"
        path.write_text(BIG + "\n" + path.read_text())
        expected = "clotho_captions_evaluation.csv: the header line cannot be read"
    result = CliRunner().invoke(main, ["build", "--dataset", reader, "--root", str(root),
                                       "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert expected in result.output and "longer than" in result.output, result.output


def test_the_process_wide_limit_is_left_as_it_was(tmp_path):
    old = csv.field_size_limit(10**9)
    try:
        scan = esc50.scan(esc50_root(tmp_path, ESC50_ROWS["huge category"]))
        assert any("longer than" in r.reason for r in scan.rejects)   # the reader's own limit
        assert csv.field_size_limit() == 10**9
    finally:
        csv.field_size_limit(old)
