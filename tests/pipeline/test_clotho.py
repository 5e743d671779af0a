"""Clotho reader: the real v1 caption files and 7 real clips, and synthetic odd file names."""
from __future__ import annotations

import csv
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from teminal.pipeline.sources import clotho
from teminal.pipeline.sources.captioned import read_csv, retrieval_items

KEY = re.compile(r"^[A-Za-z0-9_-]+$")
REAL_CLIPS = {
    "01 A pug struggles to breathe 1_14_2008.wav", "01 barreau bunker original.wav",
    "01 hospital elevator with computer voice.wav", "02-Bakken_Rollercoaster.wav",
    "Flipping Pages.wav", "Tenerife_bazaar_2.wav", "turning pages book slow quickly.wav",
}


def write_audio(path: Path, sr: int = 16000, seconds: float = 0.25) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 330 * t), sr)
    return path


def write_captions(path: Path, names, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(clotho.HEADER)
        for i, name in enumerate(names):
            w.writerow([name] + [f"Caption {k} of clip {i}, with a comma." for k in range(1, 6)])
    return path


@pytest.fixture
def real_clotho(shared_data) -> Path:
    root = shared_data / "clotho"
    if not (root / "clotho_csv_files" / "clotho_captions_evaluation.csv").is_file():
        pytest.skip(f"Clotho caption files are absent from {root}")
    return root


# ---------------------------------------------------------------------------------------------
# Real caption files and clips

@pytest.mark.realdata
def test_real_counts_and_encoding(real_clotho):
    for split, n in (("development", 2893), ("evaluation", 1045)):
        path = real_clotho / "clotho_csv_files" / f"clotho_captions_{split}.csv"
        rows, encoding = read_csv(path, clotho.HEADER)
        assert len(rows) == n
        assert all(len(r.fields) == 6 for r in rows)
        # the v1 files are pure ASCII: UTF-8 and ISO-8859-1 agree, no mojibake possible
        assert path.read_bytes().isascii() and encoding == "utf-8-sig"


@pytest.mark.realdata
def test_real_clips_found_by_exact_name(real_clotho):
    scan = clotho.scan(real_clotho, progress=False)
    assert {Path(c.path).name for c in scan.clips} == REAL_CLIPS
    assert Counter(r.reason for r in scan.rejects) == {"missing audio": 2893 + 1045 - 7}
    for clip in scan.clips:
        assert clip.split == "test" and clip.dataset == "clotho"
        assert len(clip.captions) == 5
        assert clip.sample_rate == 44100 and 15.0 <= clip.duration <= 30.0
        assert KEY.match(clip.source_id) and clip.source_id.startswith("clotho-")
    items = retrieval_items(scan)
    assert len(items) == 7 and all(len(caps) == 5 for _, _, caps in items)
    # development has no audio here: every clip is a reject under the official layout
    dev = [r for r in scan.rejects if "/clotho_audio_files/development/" in r.path]
    assert len(dev) == 2893


@pytest.mark.realdata
def test_real_v1_has_no_validation_split(real_clotho):
    with pytest.raises(ValueError, match="validation"):
        clotho.scan(real_clotho, splits=["val"])
    only_eval = clotho.scan(real_clotho, splits=["evaluation"], progress=False)
    assert len(only_eval.clips) == 7 and len(only_eval.rejects) == 1045 - 7


@pytest.mark.realdata
def test_real_names_that_collide_after_sanitising_get_distinct_ids(real_clotho):
    rows, _ = read_csv(real_clotho / "clotho_csv_files" / "clotho_captions_development.csv",
                       clotho.HEADER)
    names = [r.fields[0] for r in rows]
    ids = [clotho.source_id(n) for n in names]
    assert len(set(ids)) == len(names)
    assert all(KEY.match(i) for i in ids)


# ---------------------------------------------------------------------------------------------
# Odd names, layouts, encodings

ODD_NAMES = [
    "Rain on a tin roof.wav",                   # spaces
    "20100402.Brugge.street.04.wav",            # dots
    "Kitchen: dishes 12:30.wav",                # colons
    "Uh, Hi, Mom. I Crashed the Car.wav",       # commas and dots
    "-leading dash.wav",
    "Car Keys.wav", "Car_Keys.wav",             # the same after sanitising
    "Café in Zürich ñ.wav",                     # non-ASCII
]


def test_odd_names_matched_exactly(tmp_path):
    write_captions(tmp_path / "clotho_csv_files" / "clotho_captions_development.csv", ODD_NAMES)
    for name in ODD_NAMES:
        write_audio(tmp_path / "clotho_audio_files" / "development" / name)
    write_audio(tmp_path / "clotho_audio_files" / "development" / "rain on a tin roof.wav")  # case differs
    scan = clotho.scan(tmp_path, progress=False)
    assert scan.rejects == []
    assert [Path(c.path).name for c in scan.clips] == ODD_NAMES
    ids = [c.source_id for c in scan.clips]
    assert len(set(ids)) == len(ids) and all(KEY.match(i) for i in ids)
    assert ids[5].startswith("clotho-Car_Keys-") and ids[6].startswith("clotho-Car_Keys-")
    assert scan.clips[0].captions[0] == "Caption 1 of clip 0, with a comma."
    assert all(c.split == "train" for c in scan.clips)


def test_unicode_nfc_csv_matches_nfd_file_and_back(tmp_path):
    nfc_name = unicodedata.normalize("NFC", "Über Straße café.wav")
    nfd_name = unicodedata.normalize("NFD", "Ökologie Åre.wav")
    assert nfc_name != unicodedata.normalize("NFD", nfc_name)
    write_captions(tmp_path / "clotho_captions_evaluation.csv",
                   [nfc_name, unicodedata.normalize("NFC", nfd_name)])
    write_audio(tmp_path / "evaluation" / unicodedata.normalize("NFD", nfc_name))  # macOS-style
    write_audio(tmp_path / "evaluation" / nfd_name)
    scan = clotho.scan(tmp_path, progress=False)
    assert scan.rejects == []
    assert len(scan.clips) == 2 and all(c.split == "test" for c in scan.clips)
    # the id is the same whichever form the CSV used
    assert clotho.source_id(nfc_name) == clotho.source_id(unicodedata.normalize("NFD", nfc_name))


def test_iso_8859_1_captions_decoded_without_mojibake(tmp_path):
    write_captions(tmp_path / "clotho_captions_evaluation.csv", ["Crème brûlée torch.wav"],
                   encoding="iso-8859-1")
    write_audio(tmp_path / "clotho_audio_files" / "evaluation" / "Crème brûlée torch.wav")
    scan = clotho.scan(tmp_path, progress=False)
    assert [Path(c.path).name for c in scan.clips] == ["Crème brûlée torch.wav"]
    _, encoding = read_csv(tmp_path / "clotho_captions_evaluation.csv", clotho.HEADER)
    assert encoding == "iso-8859-1"


def test_html_entities_mojibake_and_converted_copies(tmp_path):
    names = ["121006_rain&amp;storm.wav", "I&#39;m back.wav", "CafÃ© noise.wav", "converted.wav"]
    write_captions(tmp_path / "clotho_captions_validation.csv", names)
    folder = tmp_path / "clotho_audio_files" / "validation"
    write_audio(folder / "121006_rain&storm.wav")
    write_audio(folder / "I'm back.wav")
    write_audio(folder / "Café noise.wav")
    write_audio(folder / "converted.flac")
    scan = clotho.scan(tmp_path, splits=["val"], progress=False)
    assert [Path(c.path).name for c in scan.clips] == [
        "121006_rain&storm.wav", "I'm back.wav", "Café noise.wav", "converted.flac"]
    assert all(c.split == "val" for c in scan.clips)


def test_builder_split_mapping(tmp_path):
    write_captions(tmp_path / "clotho_captions_development.csv", ["d.wav"])
    write_captions(tmp_path / "clotho_captions_evaluation.csv", ["e.wav"])
    write_audio(tmp_path / "development" / "d.wav")
    write_audio(tmp_path / "evaluation" / "e.wav")
    scan = clotho.scan(tmp_path, {"train": ["development"], "test": "evaluation"}, progress=False)
    assert [(c.split, Path(c.path).name) for c in scan.clips] == [("train", "d.wav"), ("test", "e.wav")]
    with pytest.raises(ValueError, match="validation"):
        clotho.scan(tmp_path, {"train": ["development"], "val": ["validation"]})


def test_user_template(tmp_path):
    write_captions(tmp_path / "clotho_captions_evaluation.csv", ["A b.c.wav"])
    write_audio(tmp_path / "evaluation" / "A b.c_16k.flac")
    assert clotho.scan(tmp_path, progress=False).clips == []
    scan = clotho.scan(tmp_path, name_template="{stem}_16k.{ext}", progress=False)
    assert [Path(c.path).name for c in scan.clips] == ["A b.c_16k.flac"]
    with pytest.raises(ValueError, match="stem"):
        clotho.scan(tmp_path, name_template="{title}.wav")


def test_malformed_rows_and_duplicates(tmp_path):
    path = tmp_path / "clotho_captions_development.csv"
    path.write_text(
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
        "good.wav,a,b,c,d,e\n"
        "short.wav,a,b\n"                        # line 3
        ",a,b,c,d,e\n"                           # line 4
        "good.wav,f,g,h,i,j\n"                   # line 5: duplicate
        'multi line.wav,"first\nsecond",b,c,d,e\n'
        "sep.wav,a\u2028b,c\x0cd,e,f,g\n", encoding="utf-8")  # not line ends for CSV
    write_audio(tmp_path / "development" / "good.wav")
    write_audio(tmp_path / "development" / "multi line.wav")
    write_audio(tmp_path / "development" / "sep.wav")
    scan = clotho.scan(tmp_path, progress=False)
    assert [c.captions[0] for c in scan.clips] == ["a", "first\nsecond", "a\u2028b"]
    reasons = sorted(r.reason for r in scan.rejects)
    assert reasons[0].startswith("malformed row at line 3: expected 6 fields")
    assert reasons[1] == "malformed row at line 4: empty file_name"
    assert reasons[2].startswith("malformed row at line 5: duplicate file_name 'good.wav' (first at line 2)")


def test_wrong_header_and_absent_csvs(tmp_path):
    path = tmp_path / "clotho_captions_evaluation.csv"
    path.write_text("filename,caption\nx.wav,y\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        clotho.scan(tmp_path)
    msg = str(e.value)
    assert str(path) in msg and "filename,caption" in msg and ",".join(clotho.HEADER) in msg
    with pytest.raises(ValueError, match="no clotho_captions"):
        clotho.scan(tmp_path / "empty")
