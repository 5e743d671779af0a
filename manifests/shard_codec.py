"""The shard member codec: how a member's audio is stored, and how a reader checks a member
against the catalog before it uses it. The pipeline encodes with it; the training stream, the
evaluator and `pipeline verify` decode and check with it.

- `CODECS`: the build's `--codec` choices and the member extension each writes ("flac": FLAC
  PCM_16; "pcm": int16 `.npy`, about 2.3x the bytes and far faster to decode). Both are
  deterministic: the same samples give the same bytes.
- `check_member`: a member's bytes against the sha256 the CATALOG records for its sample key
  (never the group JSON inside the same tar, which a replaced shard brings along), and
  `check_group_build`: the group's build against the build the catalog lists for its shard, so
  a shard from another build (another seed, the same keys) or a catalog of another build over
  these shards is refused, naming the shard and the member.

Sample conventions: float32 in [-1, 1); int16 <-> float32 divides/multiplies by 32768, which is
what libsndfile does when it reads PCM_16 as float, so every path agrees on the samples.
"""
from __future__ import annotations

import io
import shlex
from pathlib import Path
from typing import Mapping

import numpy as np

from teminal.manifests.digests import sha256_hex
from teminal.manifests.vocabulary import SHARDS_DIR, commands_text, remake_commands

INT16_SCALE = 32768.0
CODECS: dict[str, str] = {"flac": "flac", "pcm": "npy"}    # --codec -> member extension
EXTENSIONS: tuple[str, ...] = tuple(CODECS.values())


def repair_hint(shard) -> str:
    """What every "this shard is bad" message ends with: the commands that list every damaged
    shard of the build folder holding `shard` (OUT/shards/<stage>/<name>.tar) and re-create
    them, runnable as printed."""
    path = Path(shard) if shard else None
    if path is None or len(path.parents) < 3 or path.parents[1].name != SHARDS_DIR:
        # no build folder to name: say which commands, on which folder, without a placeholder
        return ("pipeline verify --data on its build folder lists every damaged shard, and "
                "pipeline build --out on that folder re-creates them")
    out = path.parents[2]
    remake = remake_commands(out)
    verify = shlex.join(["pipeline", "verify", "--data", str(out)])
    return (f"`{verify}` lists every damaged shard" +
            (f"; {commands_text(remake)} re-create{'s' * (len(remake) == 1)} them"
             if remake else ""))


class CorruptShard(ValueError):
    """A shard or member whose bytes are not what the catalog's build wrote."""


# -- encoding and decoding -----------------------------------------------------------------------

def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * INT16_SCALE), -32768, 32767).astype(np.int16)


def int16_to_float(q: np.ndarray) -> np.ndarray:
    """int16 samples (a channel axis last is averaged) as float32 in [-1, 1)."""
    if q.ndim > 1:
        q = q.mean(axis=1)
    y = q.astype(np.float32)
    y *= np.float32(1.0 / INT16_SCALE)
    return y


def encode_member(x: np.ndarray, sample_rate: int, codec: str = "flac") -> tuple[bytes, str]:
    """Encode float32 mono to the bytes of a shard member; returns (bytes, extension)."""
    import soundfile as sf

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    q = to_int16(x)
    buf = io.BytesIO()
    if codec == "flac":
        sf.write(buf, q, int(sample_rate), format="FLAC", subtype="PCM_16")
    else:
        np.save(buf, q, allow_pickle=False)
    return buf.getvalue(), CODECS[codec]


def decode_member(data: bytes, ext: str, where: str | None = None,
                  shard=None) -> tuple[np.ndarray, int | None]:
    """Inverse of encode_member: (float32 mono, sample_rate or None for .npy).

    Undecodable bytes raise ValueError naming `where` (member and shard) and the fix for
    `shard`, instead of libsndfile's or numpy's message that names nothing."""
    import soundfile as sf

    ext = ext.lower().lstrip(".").rsplit(".", 1)[-1]
    if ext not in EXTENSIONS:
        raise ValueError(f"unknown member extension {ext!r}; expected "
                         f"{' or '.join(map(repr, EXTENSIONS))}")
    try:
        if ext == "flac":
            q, sr = sf.read(io.BytesIO(data), dtype="int16")
            return int16_to_float(q), int(sr)
        a = np.load(io.BytesIO(data), allow_pickle=False)
        if a.dtype == np.int16:
            return int16_to_float(a), None
        return a.astype(np.float32), None
    except Exception as e:  # libsndfile's errors can even fail to print
        try:
            reason = " ".join(str(e).split()) or type(e).__name__
        except Exception:
            reason = type(e).__name__
        raise ValueError(f"{where or 'a shard member'}: cannot decode the {ext} member "
                         f"({reason}); the shard is corrupt: {repair_hint(shard)}") from None


# -- checks against the catalog ------------------------------------------------------------------

def check_member(data: bytes, expected: str | None, name: str, shard) -> None:
    """CorruptShard unless the member's bytes hash to `expected`, the sha256 the catalog records
    for its sample key (None: the catalog has no row for it; "": a row written before members
    carried a sha256, nothing to compare). About a millisecond per 10 s member."""
    if expected is None:
        raise CorruptShard(f"{shard}: member {name} has no row in the catalog (the shard is "
                           f"from another build, or the catalog is): {repair_hint(shard)}")
    if expected and sha256_hex(data) != expected:
        raise CorruptShard(f"{shard}: member {name} does not match its sha256 in the catalog "
                           f"(the shard is corrupt, or from another build): {repair_hint(shard)}")


def check_group_build(meta: Mapping, expected: str | None, shard) -> None:
    """CorruptShard unless the group's JSON names the build the catalog lists for its shard
    (`expected` None: the catalog records none, nothing to compare)."""
    found = meta.get("build_id") if isinstance(meta, Mapping) else None
    if expected and found != expected:
        key = meta.get("group_key") if isinstance(meta, Mapping) else None
        raise CorruptShard(f"{shard}: group {key} was written by build {found}, the catalog "
                           f"lists build {expected}: the shards and the catalog come from "
                           f"different builds; {repair_hint(shard)}")


def unreadable_shard(shard, error) -> CorruptShard:
    """The error for a tar that breaks mid-read (truncated, not a tar)."""
    return CorruptShard(f"{shard}: unreadable shard ({' '.join(str(error).split())}); "
                        f"{repair_hint(shard)}")
