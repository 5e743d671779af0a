"""Audio primitives of the pipeline: decode a source once, level it, fit it to a slot, store it.

Every function here is pure and deterministic (same input, same bits out), because a sample's
recipe must re-render to the exact bytes stored in its shard.

Sample conventions: float32 in [-1, 1); int16 <-> float32 conversion divides/multiplies by 32768,
which is what libsndfile does when it reads PCM_16 as float, so the fast int16 path, soundfile's
float path and the stored members all agree.
"""
from __future__ import annotations

import errno
import functools
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

# The stored members' codec is the contract layer's (read back by trainers and evaluators); the
# pipeline encodes through it.
from teminal.manifests.shard_codec import (CODECS, INT16_SCALE, decode_member,  # noqa: F401
                                           encode_member, to_int16)

SILENCE_PEAK_DB = -60.0      # a source whose peak, DC offset removed, is below this is "silent"
MIN_SOURCE_SECONDS = 0.1     # shorter sources are rejected: too short to hold a sound event
ENERGY_FLOOR_DB = -120.0     # rms_db of digital silence; loudness is never pushed from below it
MAX_GAIN_DB = 60.0           # normalisation never amplifies by more than this
FIT_POLICIES = ("repeat", "repeatpad", "zero")


class AudioError(Exception):
    """A source file that cannot be used; the message is the reject reason recorded in the catalog.

    Defined here, not in `sources`, so that `audio` imports nothing of the readers that use it."""


# ---------------------------------------------------------------------------------------------
# Headers and decoding

def read_header(path) -> tuple[int, int, int]:
    """(sample_rate, channels, frames) from the file header, without decoding audio.

    Raises AudioError with the reject reason: "missing file", "unreadable header: ...",
    "empty (0 frames)"."""
    info = _info(os.fspath(path))
    return int(info.samplerate), int(info.channels), int(info.frames)


# Sane limits checked on the header BEFORE decoding: a header implying an absurd decode (a
# rate far outside real audio, thousands of channels, hours of samples) is a reject, not a
# build killed by the kernel for memory.
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 1000, 768_000
MAX_SOURCE_CHANNELS = 64
MAX_SOURCE_SECONDS = 3 * 3600
MAX_DECODE_BYTES = 2 << 30   # float32 samples of all channels


def _info(path: str):
    if os.path.isdir(path):
        raise AudioError("a folder, not an audio file")
    if not os.path.exists(path):
        raise AudioError("missing file")
    if not os.path.isfile(path):
        raise AudioError("not a regular file")
    if not os.access(path, os.R_OK):
        raise AudioError("unreadable file: permission denied")
    try:
        info = sf.info(path)
    except Exception as e:  # libsndfile raises several types for garbage headers
        raise AudioError(f"unreadable header: {_one_line(e)}") from None
    if info.frames <= 0:
        raise AudioError("empty (0 frames)")
    problem = header_problem(int(info.samplerate), int(info.channels), int(info.frames))
    if problem:
        raise AudioError(f"implausible header: {problem}")
    return info


def header_problem(sample_rate: int, channels: int, frames: int) -> str | None:
    """Why a header's numbers cannot be real audio worth decoding, or None."""
    if not MIN_SOURCE_RATE <= sample_rate <= MAX_SOURCE_RATE:
        return (f"sample rate {sample_rate} Hz is outside {MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz")
    if not 1 <= channels <= MAX_SOURCE_CHANNELS:
        return f"{channels} channels (at most {MAX_SOURCE_CHANNELS})"
    if frames / sample_rate > MAX_SOURCE_SECONDS:
        return (f"{frames / sample_rate:.0f} s of audio (at most {MAX_SOURCE_SECONDS} s per "
                f"source)")
    if frames * channels * 4 > MAX_DECODE_BYTES:
        return (f"{frames} frames x {channels} channels would decode to "
                f"{frames * channels * 4 / 2**30:.1f} GiB (at most {MAX_DECODE_BYTES / 2**30:g})")
    return None


def check_codec_rate(codec: str, sample_rate: int) -> None:
    """ValueError when `codec` cannot store audio at `sample_rate`: found before any decoding
    by encoding 10 ms of silence, not after the whole source pool was decoded."""
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"--sample-rate {sample_rate!r}: give a positive whole number of Hz "
                         f"(for example 48000 or 16000)")
    try:
        encode_member(np.zeros(max(1, sample_rate // 100), np.float32), sample_rate, codec)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"--sample-rate {sample_rate}: codec {codec} cannot store that rate "
                         f"({_one_line(e)}); FLAC takes 1-655350 Hz, or use --codec pcm") from None


def load_source(path, sample_rate: int, silence_db: float = SILENCE_PEAK_DB,
                min_seconds: float = MIN_SOURCE_SECONDS) -> np.ndarray:
    """Decode a source file to float32 mono at `sample_rate`, full length, resampled once.

    Raises AudioError (its message is the reject reason) for a missing, undecodable, truncated,
    empty, too short (under `min_seconds`; a one-sample clip is not "an impulse") or silent
    file. Silence is judged on the signal with its DC offset removed: a constant offset has a
    high peak but carries no sound (peak of the AC part below `silence_db` dBFS)."""
    path = os.fspath(path)
    info = _info(path)
    try:
        if info.format == "WAV" and info.subtype == "PCM_16":
            # libsndfile's int->float conversion is ~5x slower than numpy's (docs/STACK-NOTES.md)
            raw, _ = sf.read(path, dtype="int16", always_2d=True)
            x = raw.astype(np.float32)
            x *= np.float32(1.0 / INT16_SCALE)
        else:
            x, _ = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"undecodable: {_one_line(e)}") from None

    declared = _declared_frames(path, info) or info.frames
    if x.shape[0] == 0:
        raise AudioError("empty (0 frames decoded)")
    if x.shape[0] < declared:
        raise AudioError(f"truncated: {x.shape[0]} of {declared} frames decoded")
    if not np.isfinite(x).all():
        raise AudioError("undecodable: non-finite samples")

    seconds = x.shape[0] / float(info.samplerate)
    if seconds < min_seconds:
        raise AudioError(f"too short ({x.shape[0]} frames = {seconds:.3g} s < {min_seconds:g} s)")
    mono = x[:, 0].copy() if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)
    dc = float(mono.mean(dtype=np.float64))
    peak = float(np.max(np.abs(mono - np.float32(dc))))
    if peak <= 0.0 or 20.0 * np.log10(peak) < silence_db:
        peak_db = "-inf" if peak <= 0.0 else f"{20.0 * np.log10(peak):.1f}"
        offset = f", DC offset {dc:+.3g} removed" if abs(dc) >= 10 ** (silence_db / 20) else ""
        raise AudioError(f"silent (peak {peak_db} dBFS < {silence_db:g} dBFS{offset})")
    return resample(mono, int(info.samplerate), sample_rate)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """float32 mono resampled with a torchaudio kernel built once per (sr_in, sr_out), on one
    torch thread: the decoded sources then do not depend on how many threads or processes a
    build uses. torch is imported here only, so a worker that never resamples (rendering,
    encoding) never pays its import (~2 s per process)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            y = _resampler(int(sr_in), int(sr_out))(torch.from_numpy(x))
    finally:
        torch.set_num_threads(before)
    return y.numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=32)
def _resampler(sr_in: int, sr_out: int):
    import torchaudio

    return torchaudio.transforms.Resample(sr_in, sr_out)


_UNCOMPRESSED = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"}


def _declared_frames(path: str, info) -> int | None:
    """Frames the WAV data chunk says it holds; libsndfile clamps a cut data chunk silently."""
    if info.format != "WAV" or info.subtype not in _UNCOMPRESSED:
        # FLAC/OGG decoders report a cut stream as an error or via info.frames; compressed WAV
        # subtypes (ADPCM, GSM) pack several frames per block, so size // block_align is wrong
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                    continue
                if cid == b"data":
                    # 0 and 0xFFFFFFFF mark streamed WAVs whose writer never filled in the size
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ---------------------------------------------------------------------------------------------
# Levels

def rms_db(x: np.ndarray, floor_db: float = ENERGY_FLOOR_DB) -> float:
    """RMS level in dBFS, never below `floor_db` (digital silence has no finite level)."""
    if x.size == 0:
        return float(floor_db)
    ms = float(np.mean(np.square(x, dtype=np.float64)))
    if ms <= 0.0:
        return float(floor_db)
    return max(float(floor_db), 10.0 * np.log10(ms))


def normalize_loudness(x: np.ndarray, target_db: float = -20.0,
                       max_gain_db: float = MAX_GAIN_DB) -> tuple[np.ndarray, float]:
    """Scale to an RMS of `target_db` dBFS; returns (y, gain_db).

    Silent input (at the energy floor) is returned unchanged with gain 0; the gain is capped at
    `max_gain_db` so a near-silent part is not blown up into noise."""
    level = rms_db(x)
    if level <= ENERGY_FLOOR_DB:
        return np.asarray(x, dtype=np.float32).copy(), 0.0
    gain_db = float(min(target_db - level, max_gain_db))
    return apply_gain_db(x, gain_db), gain_db


def apply_gain_db(x: np.ndarray, gain_db: float) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) * np.float32(10.0 ** (gain_db / 20.0))


def peak_limit(x: np.ndarray, ceiling: float = 0.99,
               extremes: tuple[np.float32, np.float32] | None = None,
               in_place: bool = False) -> tuple[np.ndarray, float]:
    """Scale down (never up) so that max |y| <= ceiling; returns (y, gain_db <= 0).

    `in_place` scales x's own buffer (rendering does, once per member); otherwise y is a new
    array. `extremes` (max, min) of x when the caller knows them, which saves a pass; the check
    after scaling needs no pass either: float32 rounding is monotonic, so max(x * g) ==
    float32(max(x) * g) (and likewise for the min) for a gain g > 0."""
    x = np.asarray(x, dtype=np.float32)
    if not x.size:
        return (x if in_place else x.copy()), 0.0
    hi, lo = extremes if extremes is not None else (x.max(), x.min())
    hi, lo = np.float32(hi), np.float32(lo)
    peak = max(float(hi), -float(lo))
    if peak <= ceiling:
        return (x if in_place else x.copy()), 0.0
    gain = np.float32(ceiling / peak)
    while max(float(hi * gain), -float(lo * gain)) > ceiling:  # float32 rounding: one ulp over
        gain = np.nextafter(gain, np.float32(0))
    y = np.multiply(x, gain, out=x if in_place else None)
    return y, float(20.0 * np.log10(float(gain)))


# ---------------------------------------------------------------------------------------------
# Slots

def highest_energy_window(x: np.ndarray, length: int) -> int:
    """Start of the `length`-sample window with the most energy (first one on ties)."""
    n = len(x)
    if length <= 0:
        raise ValueError(f"window length must be positive, got {length}")
    if n <= length:
        return 0
    c = np.concatenate(([0.0], np.cumsum(np.square(x, dtype=np.float64))))
    energy = c[length:] - c[:-length]
    return int(np.argmax(energy))


def padding_spans(n: int, length: int, policy: str = "repeat") -> list[tuple[int, int]]:
    """Where the copies of an n-sample clip go when `policy` pads it to `length` samples:
    (offset in the slot, samples of the clip from its start), the rest of the slot silent.
      - "repeat":    tile the clip and cut (LAION-CLAP's "repeat"), the default for singles/overlays;
      - "repeatpad": whole repeats, then zeros (LAION-CLAP's "repeatpad");
      - "zero":      the clip once, then zeros.
    The one definition of padding in the pipeline: `fit_to_length`, rendering (compose) and the
    trainer's replayed singles all place copies where it says."""
    if policy not in FIT_POLICIES:
        raise ValueError(f"unknown fit policy {policy!r}; choose one of {', '.join(FIT_POLICIES)}")
    if n <= 0:
        raise ValueError("cannot pad an empty clip")
    if policy == "zero":
        return [(0, min(n, length))]
    whole = policy == "repeatpad"
    return [(pos, min(n, length - pos)) for pos in range(0, length, n)
            if not (whole and pos + n > length)]


def fit_to_length(x: np.ndarray, length: int, policy: str = "repeat") -> np.ndarray:
    """Make `x` exactly `length` samples long: longer input is cut to its highest-energy window,
    shorter input padded by `policy` (`padding_spans`)."""
    if policy not in FIT_POLICIES:
        raise ValueError(f"unknown fit policy {policy!r}; choose one of {', '.join(FIT_POLICIES)}")
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if n == 0:
        raise ValueError("cannot fit an empty clip to a slot")
    if n >= length:
        start = highest_energy_window(x, length)
        return x[start:start + length].copy()
    out = np.zeros(length, dtype=np.float32)
    for pos, k in padding_spans(n, length, policy):
        out[pos:pos + k] = x[:k]
    return out


# ---------------------------------------------------------------------------------------------
# Stored members

def write_wav(path, x: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV to `path`. libsndfile reports a full disk as a bare "System error";
    this says which disk and what to do (OSError ENOSPC), so a long run's log is readable."""
    try:
        sf.write(path, x, int(sample_rate), subtype="PCM_16")
    except (RuntimeError, OSError) as e:
        free = _free_bytes(Path(path).parent)
        if free is not None and free < DISK_FULL_BYTES:
            raise OSError(errno.ENOSPC, f"no space left on the disk holding {path} "
                                        f"({free:,} bytes free) while writing audio: free some "
                                        f"space or write somewhere else (libsndfile: "
                                        f"{_one_line(e)})") from e
        raise


DISK_FULL_BYTES = 16 * 2**20   # below this much free space a failed write is a full disk


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


__all__ = [
    "read_header", "load_source", "resample", "rms_db", "normalize_loudness", "apply_gain_db",
    "peak_limit", "highest_energy_window", "padding_spans", "fit_to_length", "encode_member",
    "decode_member", "to_int16", "SILENCE_PEAK_DB", "MIN_SOURCE_SECONDS", "FIT_POLICIES", "CODECS",
]
