"""AudioCaps reader: real caption files (no audio) and synthetic audio under every accepted name."""
from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from teminal.pipeline.sources import audiocaps
from teminal.pipeline.sources.captioned import read_csv, retrieval_items

KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def write_audio(path: Path, sr: int = 16000, seconds: float = 0.25, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, sr)
    return path


def write_csv(path: Path, rows, header=audiocaps.HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def real_csvs(shared_data) -> Path:
    root = shared_data / "audiocaps"
    if not all((root / f"{s}.csv").is_file() for s in audiocaps.SPLITS):
        pytest.skip(f"AudioCaps caption files are absent from {root}")
    return root


# ---------------------------------------------------------------------------------------------
# Real caption files

@pytest.mark.realdata
def test_real_row_and_clip_counts(real_csvs):
    expected = {"train": (49838, 49838), "val": (2475, 495), "test": (4875, 975)}
    for split, (n_rows, n_clips) in expected.items():
        rows, encoding = read_csv(real_csvs / f"{split}.csv", audiocaps.HEADER)
        assert encoding == "utf-8-sig"
        assert len(rows) == n_rows
        assert len({(r.fields[1], r.fields[2]) for r in rows}) == n_clips


@pytest.mark.realdata
def test_real_captions_without_audio_are_each_reported(real_csvs):
    scan = audiocaps.scan(real_csvs, progress=False)
    assert scan.clips == []
    assert not scan.synthetic
    assert Counter(r.reason for r in scan.rejects) == {"missing audio": 49838 + 495 + 975}
    assert {r.dataset for r in scan.rejects} == {"audiocaps"}
    by_split = Counter(r.path.rsplit("/", 2)[-2] for r in scan.rejects)
    assert by_split == {"train": 49838, "val": 495, "test": 975}
    # one reject per clip, named by the default template
    assert len({r.path for r in scan.rejects}) == len(scan.rejects)
    assert any(r.path.rsplit("/", 1)[-1].startswith("-") for r in scan.rejects)  # ids with "-"
    assert all(r.path.endswith(".*") for r in scan.rejects)


@pytest.mark.realdata
def test_real_val_clips_found_under_every_name_form(real_csvs, tmp_path):
    shutil.copy(real_csvs / "val.csv", tmp_path / "val.csv")
    rows, _ = read_csv(tmp_path / "val.csv", audiocaps.HEADER)
    groups: dict[tuple[str, str], list[list[str]]] = {}
    for r in rows:
        groups.setdefault((r.fields[1], r.fields[2]), []).append(r.fields)
    (yt0, st0), (yt1, st1), (yt2, st2) = list(groups)[:3]
    audio = tmp_path / "audio" / "val"
    write_audio(audio / f"{yt0}_{st0}.flac", sr=44100)
    write_audio(audio / f"{groups[(yt1, st1)][3][0]}.wav", sr=32000)  # its 4th audiocap_id
    write_audio(audio / f"Y{yt2}.ogg", sr=48000, channels=2)

    scan = audiocaps.scan(tmp_path, progress=False)
    assert [c.source_id for c in scan.clips] == [
        audiocaps_id(yt0, st0), audiocaps_id(yt1, st1), audiocaps_id(yt2, st2)]
    assert [c.sample_rate for c in scan.clips] == [44100, 32000, 48000]
    for clip, key in zip(scan.clips, [(yt0, st0), (yt1, st1), (yt2, st2)]):
        assert clip.captions == tuple(f[3] for f in groups[key])
        assert len(clip.captions) == 5
        assert clip.split == "val" and clip.dataset == "audiocaps"
        assert clip.duration == pytest.approx(0.25)
        assert Path(clip.path).is_absolute()
    assert Counter(r.reason for r in scan.rejects) == {"missing audio": 495 - 3}


def audiocaps_id(youtube_id: str, start_time: str) -> str:
    return f"audiocaps-{youtube_id}_{start_time}"


# ---------------------------------------------------------------------------------------------
# Synthetic CSVs and audio

ROWS_TRAIN = [
    ("1", "-dash_id0AB", "30", "A dog barks, then a man speaks"),
    ("2", "abcDEF_1234", "0", 'Rain falls "heavily" on a roof'),
    ("3", "zzz", "120", "Birds chirp"),
]
ROWS_TEST = [
    ("11", "tst1", "10", "A bell rings"), ("12", "tst1", "10", "A bell is ringing, twice"),
    ("13", "tst2", "20", "Water runs"), ("14", "tst2", "20", "A tap is running"),
]


def test_templates_layouts_and_odd_ids(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS_TRAIN)
    write_csv(tmp_path / "test.csv", ROWS_TEST)
    write_audio(tmp_path / "train" / "-dash_id0AB_30.wav")            # ROOT/<split>/, default form
    write_audio(tmp_path / "train" / "2.flac")                         # {audiocap_id}
    write_audio(tmp_path / "audio" / "test" / "tst2.ogg")              # {youtube_id}
    scan = audiocaps.scan(tmp_path, progress=False)
    ids = {c.source_id: c for c in scan.clips}
    assert set(ids) == {"audiocaps--dash_id0AB_30", "audiocaps-abcDEF_1234_0", "audiocaps-tst2_20"}
    assert all(KEY.match(s) for s in ids)
    assert ids["audiocaps--dash_id0AB_30"].captions == ("A dog barks, then a man speaks",)
    assert ids["audiocaps-abcDEF_1234_0"].captions == ('Rain falls "heavily" on a roof',)
    assert ids["audiocaps-tst2_20"].captions == ("Water runs", "A tap is running")
    assert sorted(Path(r.path).name for r in scan.rejects) == ["tst1_10.*", "zzz_120.*"]
    assert retrieval_items(scan) == [
        ("audiocaps-tst2_20", ids["audiocaps-tst2_20"].path, ("Water runs", "A tap is running"))]
    assert audiocaps.retrieval_items is retrieval_items


def test_user_template_is_tried_first_and_flat_folder(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS_TRAIN)
    write_audio(tmp_path / "audio" / "zzz-120-130.flac")  # flat ROOT/audio/
    write_audio(tmp_path / "audio" / "Yzzz.wav")
    scan = audiocaps.scan(tmp_path, name_template="{youtube_id}-{start_time}-{end_time}.{ext}",
                          progress=False)
    assert [Path(c.path).name for c in scan.clips] == ["zzz-120-130.flac"]
    # the user template names the expected path of missing clips
    assert Path(scan.rejects[0].path).name == "-dash_id0AB-30-40.*"
    default = audiocaps.scan(tmp_path, progress=False)
    assert [Path(c.path).name for c in default.clips] == ["Yzzz.wav"]


def test_bad_template_is_a_clear_error(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS_TRAIN)
    with pytest.raises(ValueError, match=r"\{ytid\}.*youtube_id"):
        audiocaps.scan(tmp_path, name_template="{ytid}.{ext}")


def test_malformed_rows_become_rejects_with_line_numbers(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "1,aaa,30,Fine caption\n"
        "2,bbb,40\n"                       # line 3: a field short
        "3,ccc,abc,Start is not a number\n"  # line 4
        "4,,10,No id\n"                      # line 5
        '5,ddd,10,"Quoted, with a comma"\n', encoding="utf-8")
    write_audio(tmp_path / "audio" / "train" / "ddd_10.wav")
    scan = audiocaps.scan(tmp_path, progress=False)
    assert [c.captions for c in scan.clips] == [("Quoted, with a comma",)]
    malformed = sorted((r.path, r.reason) for r in scan.rejects if r.reason.startswith("malformed"))
    assert [p.rsplit(":", 1)[1] for p, _ in malformed] == ["3", "4", "5"]
    assert "got 3" in malformed[0][1] and "not a number" in malformed[1][1]
    assert "empty youtube_id" in malformed[2][1]
    assert [r.reason for r in scan.rejects if not r.reason.startswith("malformed")] == ["missing audio"]


def test_wrong_header_names_file_found_and_expected(tmp_path):
    write_csv(tmp_path / "train.csv", [("a.wav", "x")], header=("file_name", "caption_1"))
    with pytest.raises(ValueError) as e:
        audiocaps.scan(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "train.csv") in msg
    assert "file_name,caption_1" in msg and "audiocap_id,youtube_id,start_time,caption" in msg


def test_unreadable_and_empty_audio_are_rejects(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS_TRAIN)
    folder = tmp_path / "audio" / "train"
    folder.mkdir(parents=True)
    (folder / "-dash_id0AB_30.wav").write_bytes(b"RIFF....not a wave file")
    sf.write(folder / "zzz_120.wav", np.zeros((0,), dtype=np.float32), 16000)
    scan = audiocaps.scan(tmp_path, progress=False)
    reasons = {Path(r.path).name: r.reason for r in scan.rejects}
    assert reasons["-dash_id0AB_30.wav"].startswith("unreadable header")
    assert reasons["zzz_120.wav"].startswith("empty")
    assert scan.clips == []


def test_split_selection_and_errors(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS_TRAIN)
    write_csv(tmp_path / "dataset" / "test.csv", ROWS_TEST)  # a clone of the AudioCaps repo
    only_test = audiocaps.scan(tmp_path, splits=["test"], progress=False)
    assert len(only_test.rejects) == 2 and all("/audio/test/" in r.path for r in only_test.rejects)
    with pytest.raises(ValueError, match="val"):
        audiocaps.scan(tmp_path, splits=["val"])
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        audiocaps.scan(tmp_path, splits=["dev"])
    with pytest.raises(ValueError, match="no train.csv"):
        audiocaps.scan(tmp_path / "nothing-here")


def test_builder_split_mapping(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS_TRAIN)
    write_csv(tmp_path / "test.csv", ROWS_TEST)
    write_audio(tmp_path / "audio" / "test" / "tst1_10.wav")   # audio stays in its own folder
    write_audio(tmp_path / "audio" / "train" / "zzz_120.wav")
    scan = audiocaps.scan(tmp_path, {"train": ["train"], "val": ["test"]}, progress=False)
    assert sorted((c.split, c.source_id) for c in scan.clips) == [
        ("train", "audiocaps-zzz_120"), ("val", "audiocaps-tst1_10")]
    with pytest.raises(ValueError, match="both"):
        audiocaps.scan(tmp_path, {"train": ["train"], "val": ["train"]})
    with pytest.raises(ValueError, match="'dev' is not one of"):
        audiocaps.scan(tmp_path, {"dev": ["train"]})


def test_scan_never_decodes_audio(tmp_path, monkeypatch):
    write_csv(tmp_path / "train.csv", ROWS_TRAIN)
    write_audio(tmp_path / "audio" / "train" / "zzz_120.wav")

    def no_read(*a, **k):
        raise AssertionError("scan decoded audio")

    monkeypatch.setattr(sf, "read", no_read)
    assert len(audiocaps.scan(tmp_path, progress=False).clips) == 1
