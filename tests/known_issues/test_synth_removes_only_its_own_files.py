"""Issue 9.1: `pipeline synth` deleted WAVs it had not written and silently replaced its own
output with a different set. It now removes only files listed in its own manifest and refuses
any folder holding anything else."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from teminal.pipeline.cli import main
from teminal.pipeline.sources import synth

TWO = dict(clips_per_class_per_fold=1, classes=["siren", "low_hum"])


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("user_file", [
    "audio/my-recording.wav",            # the reported case: user WAVs, no meta/esc50.csv
    "audio/1-900000-A-0.wav",            # a user file with a name synth would write
    "notes.txt",                          # anything else at the top
    "meta/esc50.csv",                     # a real CSV without the marker
    "deep/inside/a/folder/take.flac",
])
def test_a_folder_with_files_synth_did_not_write_is_refused_untouched(tmp_path, user_file):
    target = tmp_path / user_file
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, np.zeros(100, np.int16), 8000, format="WAV") if user_file.endswith(".wav") \
        else target.write_bytes(b"user data")
    before = _snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="Nothing was changed"):
        synth.write_synthetic_esc50(tmp_path, **TWO)
    assert _snapshot(tmp_path) == before


def test_a_user_file_added_to_synth_output_is_refused_and_kept(tmp_path):
    synth.write_synthetic_esc50(tmp_path, **TWO)
    (tmp_path / "audio" / "mine.wav").write_bytes(b"RIFF....")
    before = _snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="did not write: audio/mine.wav"):
        synth.write_synthetic_esc50(tmp_path, seed=1, replace=True, **TWO)
    assert _snapshot(tmp_path) == before


def test_a_synth_clip_the_user_edited_is_never_removed(tmp_path):
    synth.write_synthetic_esc50(tmp_path, **TWO)
    clip = sorted((tmp_path / "audio").iterdir())[0]
    clip.write_bytes(b"my own bytes")
    with pytest.raises(FileExistsError, match="changed since"):
        synth.write_synthetic_esc50(tmp_path, clips_per_class_per_fold=2, classes=["siren", "low_hum"],
                                    replace=True)
    assert clip.read_bytes() == b"my own bytes"


@pytest.mark.parametrize("change", [dict(seed=1), dict(clips_per_class_per_fold=2),
                                    dict(classes=["siren", "drum_hits"])])
def test_rerun_with_other_settings_is_refused_unless_replace(tmp_path, change):
    synth.write_synthetic_esc50(tmp_path, **TWO)
    before = _snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="other settings.*--replace"):
        synth.write_synthetic_esc50(tmp_path, **{**TWO, **change})
    assert _snapshot(tmp_path) == before
    synth.write_synthetic_esc50(tmp_path, replace=True, **{**TWO, **change})
    manifest = json.loads((tmp_path / synth.MANIFEST).read_text())
    assert manifest["complete"] and set(manifest["files"]) == {
        p for p in _snapshot(tmp_path) if p != synth.MANIFEST}


def test_rerun_with_the_same_settings_rewrites_the_same_bytes(tmp_path):
    synth.write_synthetic_esc50(tmp_path, **TWO)
    before = _snapshot(tmp_path)
    synth.write_synthetic_esc50(tmp_path, **TWO)
    assert _snapshot(tmp_path) == before


def test_a_killed_run_can_be_rerun(tmp_path, monkeypatch):
    calls = []

    def dies(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    real = synth.write_wav
    monkeypatch.setattr(synth, "write_wav", dies)
    with pytest.raises(KeyboardInterrupt):
        synth.write_synthetic_esc50(tmp_path, **TWO)
    monkeypatch.setattr(synth, "write_wav", real)
    synth.write_synthetic_esc50(tmp_path, seed=5, **TWO)  # unfinished: no --replace needed
    assert len(list((tmp_path / "audio").iterdir())) == 10


def test_cli_refuses_with_one_line_and_names_the_folder(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "field.wav").write_bytes(b"RIFF")
    result = CliRunner().invoke(main, ["synth", "esc50", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(tmp_path) in result.output and "audio/field.wav" in result.output
    assert (tmp_path / "audio" / "field.wav").exists()
