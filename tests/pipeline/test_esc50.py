from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from teminal.pipeline import sources
from teminal.pipeline.sources import esc50

HEADER = "filename,fold,target,category,esc10,src_file,take"
ID = re.compile(r"^[A-Za-z0-9_-]+$")


def make_esc50(root: Path, rows: list[str], files: list[str] | None = None, header: str = HEADER,
               seconds: float = 0.2) -> Path:
    """A tiny official-layout folder; `files` are written as valid 44.1 kHz clips
    (default: every filename of a well-formed row)."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("\n".join([header, *rows]) + "\n")
    if files is None:
        files = [r.split(",")[0] for r in rows if r.count(",") == 6]
    t = np.arange(int(seconds * 44100)) / 44100
    for name in files:
        sf.write(root / "audio" / name, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
                 44100, subtype="PCM_16")
    return root


def row(name, fold=1, target=0, category="dog"):
    return f"{name},{fold},{target},{category},False,1,A"


# --- real and synthetic data ----------------------------------------------------------------

def test_scan_real_esc50(esc50_real):
    scan = esc50.scan(esc50_real)
    assert len(scan.clips) == 113 and scan.rejects == [] and not scan.synthetic
    clip = scan.clips[0]
    assert clip.dataset == "esc50" and clip.source_id.startswith("esc50-")
    assert clip.sample_rate == 44100 and clip.duration == pytest.approx(5.0)
    assert Path(clip.path).is_absolute() and Path(clip.path).is_file()
    assert all(ID.match(c.source_id) for c in scan.clips)
    assert len({c.source_id for c in scan.clips}) == 113
    assert len({c.label for c in scan.clips}) == 50
    assert "chirping birds" in {c.label for c in scan.clips}  # "_" -> " "
    by_fold = Counter(c.fold for c in scan.clips)
    by_split = Counter(c.split for c in scan.clips)
    assert by_split == {"val": by_fold[4], "test": by_fold[5], "train": by_fold[1] + by_fold[2] + by_fold[3]}
    assert [c.source_id for c in scan.clips] == sorted(c.source_id for c in scan.clips)


def test_scan_accepts_the_esc50_master_parent(esc50_real, tmp_path):
    (tmp_path / "ESC-50-master").symlink_to(esc50_real, target_is_directory=True)
    assert len(esc50.scan(tmp_path).clips) == 113
    assert len(sources.scan("esc50", tmp_path).clips) == 113


def test_scan_synthetic_is_flagged(synthetic_esc50):
    scan = esc50.scan(synthetic_esc50)
    assert scan.synthetic and scan.rejects == []
    assert {c.dataset for c in scan.clips} == {"esc50-synthetic"}
    assert all(c.source_id.startswith("esc50synth-") for c in scan.clips)
    assert "rising chirp" in {c.label for c in scan.clips}


def test_custom_splits(synthetic_esc50):
    scan = esc50.scan(synthetic_esc50, {"train": [1, 2, 3, 4], "test": [5]})
    assert {c.split for c in scan.clips} == {"train", "test"}
    assert {c.fold for c in scan.clips if c.split == "test"} == {5}
    only = esc50.scan(synthetic_esc50, {"test": [5]})
    assert {c.fold for c in only.clips} == {5} and only.rejects == []  # left-out folds are no rejects
    with pytest.raises(ValueError, match="fold 4 is in both split"):
        esc50.scan(synthetic_esc50, {"train": [1, 4], "val": [4]})


# --- roots and headers ----------------------------------------------------------------------

def test_missing_root_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        esc50.scan(tmp_path / "nowhere")
    msg = str(e.value)
    assert "https://github.com/karolpiczak/ESC-50" in msg and "pipeline synth esc50" in msg
    assert "pipeline download esc50" in msg


def test_folder_without_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an ESC-50 folder"):
        esc50.scan(tmp_path)


def test_malformed_header_raises_up_front(tmp_path):
    root = make_esc50(tmp_path, ["a.wav,1,0,dog"], files=["a.wav"], header="file,fold,label,cat")
    with pytest.raises(ValueError) as e:
        esc50.scan(root)
    msg = str(e.value)
    assert str(root / "meta" / "esc50.csv") in msg and HEADER in msg and "filename" in msg


def test_bom_and_blank_lines_are_tolerated(tmp_path):
    root = make_esc50(tmp_path, [row("1-1-A-0.wav"), "", row("1-2-A-1.wav", target=1, category="rain")])
    csv_file = root / "meta" / "esc50.csv"
    csv_file.write_bytes(b"\xef\xbb\xbf" + csv_file.read_bytes())
    scan = esc50.scan(root)
    assert [c.label for c in scan.clips] == ["dog", "rain"] and scan.rejects == []


# --- rejects --------------------------------------------------------------------------------

def test_each_kind_of_bad_row_is_a_reject(tmp_path):
    rows = [
        row("1-1-A-0.wav"),                              # line 2: fine
        row("1-2-A-0.wav"),                              # line 3: listed, file missing
        row("1-3-A-0.wav"),                              # line 4: garbage bytes
        row("1-4-A-0.wav"),                              # line 5: zero frames
        row("1-5-A-0.wav", fold="x"),                    # line 6: bad fold
        row("1-6-A-0.wav", fold=9),                      # line 7: fold outside ESC-50
        "1-7-A-0.wav,1,0",                               # line 8: missing columns
        row("1-8-A-0.wav") + ",extra",                   # line 9: too many fields
        row("1-1-A-0.wav"),                              # line 10: duplicate
        row(""),                                         # line 11: empty filename
        row("../escape.wav"),                            # line 12: a path
        row("1-9-A-0.wav", target="dog"),                # line 13: bad target
        row("1-10-A-0.wav", category=" "),               # line 14: empty category
    ]
    root = make_esc50(tmp_path, rows, files=["1-1-A-0.wav", "1-5-A-0.wav", "1-6-A-0.wav",
                                              "1-9-A-0.wav", "1-10-A-0.wav"])
    (root / "audio" / "1-3-A-0.wav").write_bytes(b"not a wav file" * 20)
    sf.write(root / "audio" / "1-4-A-0.wav", np.zeros(0, np.float32), 44100)
    scan = esc50.scan(root)
    assert [c.source_id for c in scan.clips] == ["esc50-1-1-A-0"]
    reasons = {Path(r.path).name if not r.path.endswith(tuple("0123456789")) else r.path: r.reason
               for r in scan.rejects}
    assert all(r.phase == "scan" and r.dataset == "esc50" for r in scan.rejects)
    assert len(scan.rejects) == len(rows) - 1
    expected = {
        "1-2-A-0.wav": "missing file",
        "1-3-A-0.wav": "unreadable header",
        "1-4-A-0.wav": "empty (0 frames)",
        "1-5-A-0.wav": "line 6): bad fold 'x'",
        "1-6-A-0.wav": "line 7): fold 9 is not an ESC-50 fold",
        "1-7-A-0.wav": "line 8): missing column(s) category",
        "1-8-A-0.wav": "line 9): 1 field(s) more than the header",
        "1-1-A-0.wav": "duplicate filename (meta/esc50.csv line 10; first listed on line 2)",
        "escape.wav": "is a path",
        "1-9-A-0.wav": "line 13): bad target 'dog'",
        "1-10-A-0.wav": "line 14): empty category",
    }
    for name, reason in expected.items():
        assert reason in reasons[name], (name, reasons[name])
    empty = [r for r in scan.rejects if r.path.endswith(":11")]
    assert len(empty) == 1 and "empty filename" in empty[0].reason


def test_scan_reads_headers_only(tmp_path):
    """A truncated WAV has a readable header: the scan keeps it, decoding rejects it later."""
    root = make_esc50(tmp_path, [row("1-1-A-0.wav")], seconds=1.0)
    path = root / "audio" / "1-1-A-0.wav"
    path.write_bytes(path.read_bytes()[:20000])
    assert len(esc50.scan(root).clips) == 1


def test_odd_names_get_safe_distinct_ids(tmp_path):
    names = ["1-1 2-A-0.wav", "1-1.2-A-0.wav", "1-1_2-A-0.wav", "1-ü-A-0.wav"]
    root = make_esc50(tmp_path, [row(n) for n in names])
    scan = esc50.scan(root)
    ids = [c.source_id for c in scan.clips]
    assert len(ids) == 4 and len(set(ids)) == 4 and scan.rejects == []
    assert all(ID.match(i) for i in ids)
    assert "esc50-1-1_2-A-0" in ids  # a clean name keeps its plain id
    # ids do not depend on which other rows are present
    solo = make_esc50(tmp_path / "solo", [row("1-1 2-A-0.wav")])
    assert esc50.scan(solo).clips[0].source_id in ids


def test_scan_is_fast(esc50_real):
    import time

    start = time.perf_counter()
    esc50.scan(esc50_real)
    assert time.perf_counter() - start < 2.0
