"""Issue 9.8 (and the file cases of 9.9): a header implying an absurd decode (a sample rate far
outside real audio) was decoded anyway until the kernel killed the build; a clash between the
source ids of two files aborted the build with an internal error naming neither; a directory
named like a .wav was reported as "missing file"; a CSV in another encoding failed with a
decode error naming no file. Headers are now checked against sane limits before decoding,
every per-file failure is a reject row whose reason names the problem (the row names the
file), and id clashes are rejects naming both files."""
from __future__ import annotations

import csv
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf

from teminal.pipeline import pool
from teminal.pipeline.audio import AudioError, header_problem, load_source, read_header
from teminal.pipeline.plan import _without_id_clashes
from teminal.pipeline.sources import esc50
from teminal.pipeline.sources.base import SourceClip


def wav(path, seconds=1.0, sr=16000, channels=1):
    rng = np.random.default_rng(0)
    sf.write(path, rng.uniform(-0.3, 0.3, (int(sr * seconds), channels)).astype(np.float32), sr,
             subtype="PCM_16")
    return path


def patch(path, offset, fmt, value):
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("rate", [4_000_000_000, 2_000_000, 10, 1])
def test_an_absurd_sample_rate_in_the_header_is_rejected_before_decoding(tmp_path, rate):
    path = wav(tmp_path / "x.wav")
    patch(path, 24, "<I", rate)  # fmt chunk: sample rate
    with pytest.raises(AudioError, match="implausible header|unreadable header"):
        read_header(path)
    with pytest.raises(AudioError, match="implausible header|unreadable header"):
        load_source(path, 16000)


@pytest.mark.parametrize("channels", [1000, 65535])
def test_an_absurd_channel_count_is_rejected(tmp_path, channels):
    path = wav(tmp_path / "x.wav")
    patch(path, 22, "<H", channels)
    with pytest.raises(AudioError, match="implausible header|unreadable header"):
        read_header(path)


@pytest.mark.parametrize("rate,channels,frames,why", [
    (400, 1, 1000, "sample rate"), (10**7, 1, 1000, "sample rate"),
    (48000, 0, 1000, "channels"), (48000, 200, 1000, "channels"),
    (48000, 1, 48000 * 4 * 3600, "s of audio"), (384000, 64, 384000 * 600, "GiB"),
])
def test_header_limits(rate, channels, frames, why):
    assert why in header_problem(rate, channels, frames)


def test_real_headers_pass_the_limits():
    for rate, ch, frames in [(44100, 1, 220500), (48000, 2, 480000), (96000, 6, 96000 * 30),
                             (8000, 1, 800), (16000, 1, 16000 * 3600)]:
        assert header_problem(rate, ch, frames) is None


@pytest.mark.parametrize("name", ["clip.wav", "clip.flac", "odd name.WAV"])
def test_a_folder_named_like_an_audio_file_is_called_a_folder(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(AudioError, match="a folder, not an audio file"):
        read_header(tmp_path / name)
    with pytest.raises(AudioError, match="missing file"):
        read_header(tmp_path / "absent.wav")


class Weird(Exception):
    def __str__(self):
        raise RuntimeError("str() failed")


@pytest.mark.parametrize("error", [RuntimeError("libsndfile internal"), MemoryError(),
                                   KeyError("x"), Weird(), ZeroDivisionError("division by zero"),
                                   OSError(5, "Input/output error")])
def test_any_decode_failure_of_one_file_is_a_reject_reason(tmp_path, monkeypatch, error):
    path = wav(tmp_path / "x.wav")

    def fails(*a, **k):
        raise error

    monkeypatch.setattr(pool, "load_source", fails)
    wave, reason, _ = pool._decode_job((str(path), 16000))
    assert wave is None and reason.startswith("undecodable")


def _copy_source(small_source, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(small_source, root)
    return root


def _append_rows(root, rows):
    with open(root / "meta" / "esc50.csv", "a", newline="") as f:
        csv.writer(f).writerows(rows)


def test_a_scan_turns_bad_files_into_rejects_that_name_them(small_source, tmp_path):
    root = _copy_source(small_source, tmp_path)
    names = sorted(p.name for p in (root / "audio").iterdir())
    patch(root / "audio" / names[0], 24, "<I", 4_000_000_000)
    (root / "audio" / names[1]).unlink()
    (root / "audio" / names[1]).mkdir()
    scan = esc50.scan(root)
    reasons = {r.path.rsplit("/", 1)[-1]: r.reason for r in scan.rejects}
    assert reasons[names[0]].startswith(("implausible header", "unreadable header"))
    assert reasons[names[1]] == "a folder, not an audio file"
    assert len(scan.clips) == len(names) - 2


@pytest.mark.parametrize("twin", ["{stem}.flac", "{stem}.WAV", "{stem}.ogg"])
def test_two_files_with_one_source_id_are_rejects_naming_both(small_source, tmp_path, twin):
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.plan import scan_sources

    root = _copy_source(small_source, tmp_path)
    first = sorted((root / "audio").iterdir())[0]
    name = twin.format(stem=first.stem)
    fmt = {"flac": "FLAC", "wav": "WAV", "ogg": "OGG"}[name.rsplit(".", 1)[1].lower()]
    x, sr = sf.read(first)
    sf.write(root / "audio" / name, x, sr, format=fmt)
    fold, src, take, target = first.stem.split("-")
    _append_rows(root, [[name, fold, target, "rising_chirp", "False", src, take]])
    scan, _ = scan_sources(BuildConfig(out=str(tmp_path / "o"), root=str(root)))
    clash = [r for r in scan.rejects if r.reason.startswith("source id clash")]
    assert len(clash) == 1 and first.name in clash[0].reason and name in clash[0].reason
    assert len({c.source_id for c in scan.clips}) == len(scan.clips)


def test_id_clash_resolution_is_deterministic_whatever_the_order():
    clips = [SourceClip(source_id="s", dataset="d", path=p, split="train", label="a")
             for p in ("/b.wav", "/a.wav", "/c.wav")]
    kept, rejects = _without_id_clashes(clips)
    again, _ = _without_id_clashes(list(reversed(clips)))
    assert [c.path for c in kept] == [c.path for c in again] == ["/a.wav"]
    assert len(rejects) == 2 and all("/a.wav" in r.reason for r in rejects)


@pytest.mark.parametrize("encoding,label", [("cp1252", "café_noise"), ("latin-1", "naïve_hum"),
                                            ("utf-16", "plain")])
def test_a_csv_in_another_encoding_is_read_or_named(small_source, tmp_path, encoding, label):
    root = _copy_source(small_source, tmp_path)
    csv_path = root / "meta" / "esc50.csv"
    text = csv_path.read_text().replace("rising_chirp", label)
    csv_path.write_bytes(text.encode(encoding))
    try:
        scan = esc50.scan(root)
    except ValueError as e:  # e.g. UTF-16: not a CSV header once decoded as bytes
        assert str(csv_path) in str(e)
        return
    assert label.replace("_", " ") in {c.label for c in scan.clips}
