from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from teminal.pipeline import audio
from teminal.pipeline.sources.base import AudioError


def tone(seconds=1.0, sr=44100, freq=440.0, amp=0.5, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write(path, x, sr=44100, subtype="PCM_16", **kw):
    sf.write(path, x, sr, subtype=subtype, **kw)
    return path


# --- headers --------------------------------------------------------------------------------

def test_read_header(tmp_path):
    p = write(tmp_path / "a.wav", tone(0.5, 22050, channels=2), 22050)
    assert audio.read_header(p) == (22050, 2, 11025)


@pytest.mark.parametrize("make, reason", [
    (lambda p: None, "missing file"),
    (lambda p: p.write_bytes(b"this is not audio at all" * 10), "unreadable header"),
    (lambda p: write(p, np.zeros(0, np.float32)), "empty (0 frames)"),
])
def test_read_header_rejects(tmp_path, make, reason):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        audio.read_header(p)


# --- decoding -------------------------------------------------------------------------------

def test_load_source_resamples_to_exact_length(tmp_path):
    p = write(tmp_path / "a.wav", tone(5.0, 44100))
    x = audio.load_source(p, 48000)
    assert x.dtype == np.float32 and x.ndim == 1 and len(x) == 240000


@pytest.mark.parametrize("sr_in, channels, subtype", [
    (8000, 1, "PCM_16"), (22050, 2, "PCM_24"), (48000, 6, "FLOAT"), (96000, 2, "PCM_16"),
])
def test_load_source_any_rate_and_channel_count(tmp_path, sr_in, channels, subtype):
    p = write(tmp_path / "a.wav", tone(1.0, sr_in, channels=channels), sr_in, subtype=subtype)
    x = audio.load_source(p, 16000)
    assert x.shape == (16000,) and x.dtype == np.float32
    assert abs(np.max(np.abs(x)) - 0.5) < 0.02


def test_load_source_flac(tmp_path):
    p = write(tmp_path / "a.flac", tone(1.0, 44100))
    assert len(audio.load_source(p, 44100)) == 44100


def test_downmix_is_channel_mean(tmp_path):
    left, right = tone(0.5, 16000, 200, 0.4), tone(0.5, 16000, 300, 0.2)
    p = write(tmp_path / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load_source(p, 16000), (left + right) / 2, atol=1e-7)


def test_int16_fast_path_matches_libsndfile_float(tmp_path):
    p = write(tmp_path / "a.wav", tone(1.0, 16000) + 0.01, 16000)
    ref, _ = sf.read(p, dtype="float32")
    np.testing.assert_array_equal(audio.load_source(p, 16000), ref)


def test_resampler_kernel_is_built_once(tmp_path):
    p = write(tmp_path / "a.wav", tone(0.2, 32000))
    audio.load_source(p, 24000)
    before = audio._resampler.cache_info()
    a = audio.load_source(p, 24000)
    after = audio._resampler.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    np.testing.assert_array_equal(a, audio.load_source(p, 24000))


def test_truncated_wav_is_rejected(tmp_path):
    """Regression: libsndfile clamps a cut data chunk and reads the rest without complaint."""
    good = write(tmp_path / "good.wav", tone(1.0, 44100))
    data = good.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    assert audio.read_header(cut)[2] < 44100  # the header read alone does not notice
    with pytest.raises(AudioError, match=r"truncated: \d+ of 44100 frames"):
        audio.load_source(cut, 44100)


def test_wav_chunks_and_compressed_subtypes_are_not_mistaken_for_truncation(tmp_path):
    x = tone(0.5, 8000)
    with sf.SoundFile(tmp_path / "meta.wav", "w", 8000, 1, "PCM_16") as f:
        f.title = "a LIST chunk before the data chunk"
        f.write(x)
    assert len(audio.load_source(tmp_path / "meta.wav", 8000)) == 4000
    for subtype in ("IMA_ADPCM", "PCM_U8", "ULAW"):
        p = write(tmp_path / f"{subtype}.wav", x, 8000, subtype=subtype)
        assert len(audio.load_source(p, 8000)) >= 4000, subtype


def test_truncated_flac_is_rejected(tmp_path):
    data = write(tmp_path / "good.flac", tone(1.0, 44100) + 0.01 * np.random.default_rng(0)
                 .standard_normal(44100).astype(np.float32)).read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="undecodable|truncated"):
        audio.load_source(cut, 44100)


def test_corrupt_flac_is_undecodable(tmp_path):
    data = bytearray(write(tmp_path / "good.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 44100)
                           .astype(np.float32)).read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4000] = bytes(4000)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="undecodable|truncated"):
        audio.load_source(bad, 44100)


def test_silent_and_near_silent_are_rejected(tmp_path):
    zeros = write(tmp_path / "zeros.wav", np.zeros(4410, np.float32))
    with pytest.raises(AudioError, match="silent"):
        audio.load_source(zeros, 44100)
    quiet = write(tmp_path / "quiet.wav", tone(0.1, 44100, amp=10 ** (-70 / 20)), subtype="FLOAT")
    with pytest.raises(AudioError, match=r"silent \(peak -70.0 dBFS"):
        audio.load_source(quiet, 44100)
    assert len(audio.load_source(quiet, 44100, silence_db=-80)) == 4410  # threshold is a knob
    soft = write(tmp_path / "soft.wav", tone(0.1, 44100, amp=10 ** (-50 / 20)))
    assert len(audio.load_source(soft, 44100)) == 4410


def test_load_source_missing_and_garbage(tmp_path):
    with pytest.raises(AudioError, match="missing file"):
        audio.load_source(tmp_path / "nope.wav", 48000)
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00")
    with pytest.raises(AudioError, match="unreadable header"):
        audio.load_source(tmp_path / "junk.wav", 48000)


def test_load_real_esc50_clip(esc50_real):
    path = sorted((esc50_real / "audio").glob("*.wav"))[0]
    x = audio.load_source(path, 48000)
    assert len(x) == 240000 and np.isfinite(x).all() and np.max(np.abs(x)) > 0.001


# --- levels ---------------------------------------------------------------------------------

def test_rms_db():
    assert audio.rms_db(np.ones(100, np.float32)) == pytest.approx(0.0)
    assert audio.rms_db(tone(1.0, 8000, 100, 1.0)) == pytest.approx(-3.0103, abs=1e-3)
    assert audio.rms_db(np.zeros(10, np.float32)) == audio.ENERGY_FLOOR_DB
    assert audio.rms_db(np.zeros(0, np.float32)) == audio.ENERGY_FLOOR_DB


def test_normalize_loudness_reaches_target_and_guards_silence():
    y, gain = audio.normalize_loudness(tone(1.0, 8000, amp=0.01), -20.0)
    assert audio.rms_db(y) == pytest.approx(-20.0, abs=1e-3) and gain > 0 and y.dtype == np.float32
    z, gain = audio.normalize_loudness(np.zeros(100, np.float32))
    assert gain == 0.0 and not z.any()
    tiny, gain = audio.normalize_loudness(np.full(100, 1e-5, np.float32), -20.0)
    assert gain == audio.MAX_GAIN_DB  # capped: a near-silent part is not blown up


def test_peak_limit_never_clips():
    x = tone(0.1, 8000, amp=3.7)
    y, gain = audio.peak_limit(x, 0.99)
    assert np.max(np.abs(y)) <= 0.99 and gain == pytest.approx(20 * np.log10(0.99 / 3.7), abs=1e-4)
    quiet = tone(0.1, 8000, amp=0.5)
    y, gain = audio.peak_limit(quiet)
    assert gain == 0.0 and np.array_equal(y, quiet)
    odd = np.array([1.0000001, -0.3], np.float32) * np.float32(1.7)
    assert np.max(np.abs(audio.peak_limit(odd, 0.99)[0])) <= 0.99


# --- slots ----------------------------------------------------------------------------------

def test_highest_energy_window():
    x = np.zeros(1000, np.float32)
    x[600:650] = 1.0
    start = audio.highest_energy_window(x, 100)
    assert start <= 600 and start + 100 >= 650
    assert audio.highest_energy_window(np.ones(300, np.float32), 100) == 0  # ties: first
    assert audio.highest_energy_window(x, 5000) == 0


def test_fit_to_length_policies():
    x = np.arange(1, 4, dtype=np.float32)
    assert audio.fit_to_length(x, 8, "repeat").tolist() == [1, 2, 3, 1, 2, 3, 1, 2]
    assert audio.fit_to_length(x, 8, "repeatpad").tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    assert audio.fit_to_length(x, 8, "zero").tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    assert audio.fit_to_length(x, 8).tolist() == audio.fit_to_length(x, 8, "repeat").tolist()
    long = np.zeros(100, np.float32)
    long[70:80] = 1
    cut = audio.fit_to_length(long, 20)
    assert len(cut) == 20 and cut.sum() == 10
    with pytest.raises(ValueError, match="unknown fit policy"):
        audio.fit_to_length(x, 8, "mirror")
    with pytest.raises(ValueError, match="empty"):
        audio.fit_to_length(np.zeros(0, np.float32), 8)


# --- stored members -------------------------------------------------------------------------

@pytest.mark.parametrize("codec, ext", [("flac", "flac"), ("pcm", "npy")])
def test_member_round_trip_and_determinism(codec, ext):
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 48000).astype(np.float32)
    data, got_ext = audio.encode_member(x, 48000, codec)
    assert got_ext == ext
    assert audio.encode_member(x, 48000, codec)[0] == data  # byte-identical repeat
    y, sr = audio.decode_member(data, "." + ext)
    assert sr == (48000 if codec == "flac" else None)
    np.testing.assert_array_equal(y, audio.to_int16(x).astype(np.float32) / 32768)
    assert np.max(np.abs(y - x)) <= 0.5 / 32768 + 1e-9
    # a decoded member re-encodes to the same bytes: what render-from-recipe relies on
    assert audio.encode_member(y, 48000, codec)[0] == data


def test_member_codec_errors():
    with pytest.raises(ValueError, match="unknown codec"):
        audio.encode_member(np.zeros(10, np.float32), 16000, "mp3")
    with pytest.raises(ValueError, match="unknown member extension"):
        audio.decode_member(b"", "ogg")


def test_flac_is_smaller_than_pcm_on_real_audio(esc50_real):
    x = audio.load_source(sorted((esc50_real / "audio").glob("*.wav"))[0], 48000)
    flac, _ = audio.encode_member(x, 48000, "flac")
    pcm, _ = audio.encode_member(x, 48000, "pcm")
    assert len(flac) < len(pcm)


# --- writing WAVs: a full disk (regression: libsndfile said only "System error") -------------

def _libsndfile_system_error(*args, **kwargs):
    raise RuntimeError("Error opening 'clip.wav': System error.")


def test_write_wav_on_a_full_disk_says_so_naming_the_path(tmp_path, monkeypatch):
    import errno

    monkeypatch.setattr(audio.sf, "write", _libsndfile_system_error)
    monkeypatch.setattr(audio, "_free_bytes", lambda folder: 0)
    with pytest.raises(OSError) as info:
        audio.write_wav(tmp_path / "clip.wav", tone(0.1), 44100)
    assert info.value.errno == errno.ENOSPC
    assert "no space left" in str(info.value) and str(tmp_path / "clip.wav") in str(info.value)
    assert "System error" in str(info.value)       # libsndfile's own words are kept


def test_write_wav_passes_other_errors_through_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(audio.sf, "write", _libsndfile_system_error)
    monkeypatch.setattr(audio, "_free_bytes", lambda folder: 10 * 2**30)
    with pytest.raises(RuntimeError, match="System error"):
        audio.write_wav(tmp_path / "clip.wav", tone(0.1), 44100)


def test_write_wav_writes_16_bit_pcm(tmp_path):
    audio.write_wav(tmp_path / "clip.wav", tone(0.1), 44100)
    info = sf.info(str(tmp_path / "clip.wav"))
    assert (info.samplerate, info.subtype) == (44100, "PCM_16")


def test_pipeline_synth_on_a_full_disk_exits_with_the_message(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from teminal.pipeline.cli import main

    monkeypatch.setattr(audio.sf, "write", _libsndfile_system_error)
    monkeypatch.setattr(audio, "_free_bytes", lambda folder: 0)
    result = CliRunner().invoke(main, ["synth", "esc50", str(tmp_path / "s"),
                                       "--clips-per-class-per-fold", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no space left on the disk holding" in result.output
