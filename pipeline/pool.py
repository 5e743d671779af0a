"""The decoded source pool: every clip decoded once, at the build's rate, into one float32 file.

A clip that fails to decode becomes a reject (phase "decode") here, before pairing, so the pairs
never depend on which worker met a bad file or when. Every worker memory-maps the pool, so a
build's memory is bounded by the pool (shared through the page cache), not by its pairs.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from teminal.manifests.digests import file_sha256
from teminal.pipeline.audio import AudioError, load_source
from teminal.pipeline.layout import CACHE_DIR, write_json_atomic
from teminal.pipeline.progress import progress_bar
from teminal.pipeline.sources.base import Reject, SourceClip


PARALLEL_DECODE_MIN_CLIPS = 2000   # fewer: decoded in the main process (see decode_pool)


@dataclass
class SourcePool:
    """Decoded sources in one float32 file: source_id -> (offset, length) in samples."""
    path: Path
    index: dict[str, tuple[int, int]]
    digests: dict[str, str]              # source_id -> sha256 of the source file (16 hex)
    rejects: list[Reject]

    def waves(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        return pool_waves(str(self.path), {s: self.index[s] for s in ids})


def decode_pool(clips: Sequence[SourceClip], sample_rate: int, out: Path, workers_pool=None,
                progress: bool = True) -> SourcePool:
    """Decode every clip once into OUT/.cache/pool-<key>.f32 (reused when the clip list, files
    and sample rate are unchanged, as after a killed build)."""
    key_text = json.dumps([sample_rate] + [(c.source_id, c.path, *_stat(c.path)) for c in clips])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    cache = out / CACHE_DIR
    data_path, index_path = cache / f"pool-{key}.f32", cache / f"pool-{key}.json"
    if data_path.exists() and index_path.exists():
        saved = json.loads(index_path.read_text())
        return SourcePool(data_path, {k: tuple(v) for k, v in saved["index"].items()},
                          saved["digests"], [Reject(**r) for r in saved["rejects"]])
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(c.path, sample_rate) for c in clips]
    # Decoding in the workers makes each of them import torch for the resampler (~2 CPU s per
    # process): worth it for a large dataset, not for a few hundred clips (~3 ms each), where the
    # main process decodes while the workers start. The pool is the same either way.
    parallel = workers_pool is not None and len(jobs) >= PARALLEL_DECODE_MIN_CLIPS
    results = (workers_pool.imap(_decode_job, jobs, chunksize=4) if parallel
               else map(_decode_job, jobs))
    index, digests, rejects, offset = {}, {}, [], 0
    tmp = data_path.with_name(f"{data_path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f, progress_bar(len(jobs), "decode", "clip", progress) as bar:
        for clip, (wave, reason, digest) in zip(clips, results):
            bar.update(1)
            if wave is None:
                rejects.append(Reject(path=clip.path, reason=reason, dataset=clip.dataset,
                                      phase="decode"))
                continue
            f.write(memoryview(wave))   # the array's own buffer: no bytes copy
            index[clip.source_id] = (offset, len(wave))
            digests[clip.source_id] = digest
            offset += len(wave)
    os.replace(tmp, data_path)
    write_json_atomic(index_path, {"index": index, "digests": digests,
                                    "rejects": [r.to_dict() for r in rejects]})
    return SourcePool(data_path, index, digests, rejects)


def _decode_job(job: tuple[str, int]) -> tuple[np.ndarray | None, str, str]:
    path, sample_rate = job
    try:
        digest = _file_digest(path)
        wave = load_source(path, sample_rate)
        return np.ascontiguousarray(wave, dtype=np.float32), "", digest
    except AudioError as e:
        return None, str(e), ""
    except MemoryError:
        return None, "undecodable: too large to decode in memory", ""
    except Exception as e:  # one file never stops the build: every failure is a reject row
        try:
            text = " ".join(str(e).split())
        except Exception:  # libsndfile's errors can fail to print
            text = ""
        return None, f"undecodable: {type(e).__name__}{': ' + text if text else ''}", ""


_OPEN_POOLS: dict[str, np.ndarray] = {}


def pool_waves(path: str, index: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    pool = _OPEN_POOLS.get(path)
    if pool is None:
        pool = _OPEN_POOLS[path] = np.memmap(path, dtype=np.float32, mode="r")
    return {sid: pool[off:off + n] for sid, (off, n) in index.items()}


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def _file_digest(path: str) -> str:
    return file_sha256(path)[:16]

