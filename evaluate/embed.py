"""Embedding helpers shared by every evaluation: a per-run text cache and batched audio.

The evaluators only ever call the adapter contract (`embed_audio`, `embed_text`), so any model
the adapter loads, and the fake models of the tests, go through the same code.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from teminal.pipeline.progress import progress_bar


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


@contextlib.contextmanager
def eval_mode(model):
    """The model in eval mode (no SpecAugment, no dropout) for the block, then back to the mode
    it was in, so an evaluation inside a training loop leaves training as it was."""
    was_training = bool(model.training)
    model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train(True)


class TextCache:
    """Text embeddings computed once per run: every distinct text goes through the text tower
    one time, in batches, whatever the number of tasks and templates that use it."""

    def __init__(self, model, batch_size: int = 64):
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self._vectors: dict[str, np.ndarray] = {}
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, text: str) -> bool:
        return text in self._vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), D] float32, L2-normalised as the model returns them."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            start = time.perf_counter()
            with torch.no_grad():
                for i in range(0, len(missing), self.batch_size):
                    chunk = missing[i:i + self.batch_size]
                    vecs = _to_numpy(self.model.embed_text(list(chunk)))
                    if vecs.shape[0] != len(chunk):
                        raise RuntimeError(f"embed_text returned {vecs.shape[0]} rows for "
                                           f"{len(chunk)} texts")
                    for text, v in zip(chunk, vecs):
                        self._vectors[text] = v
            self.seconds += time.perf_counter() - start
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])


class AudioStats:
    """Counts and time of audio embedding, for the clips/s figure of a result."""

    def __init__(self):
        self.clips = 0
        self.seconds = 0.0
        self.audio_seconds = 0.0

    def to_dict(self) -> dict:
        return {"audio_clips": self.clips, "audio_embed_seconds": round(self.seconds, 3),
                "clips_per_s": round(self.clips / self.seconds, 2) if self.seconds > 0 else None}


def embed_batch(model, waves: Sequence[np.ndarray], sample_rate: int,
                stats: AudioStats | None = None) -> np.ndarray:
    """Embed equal-length (or zero-padded to the longest) waveforms in one call: [B, D]."""
    length = max(len(w) for w in waves)
    batch = np.zeros((len(waves), length), dtype=np.float32)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    x = torch.from_numpy(batch).to(model.device)
    start = time.perf_counter()
    with torch.no_grad():
        out = _to_numpy(model.embed_audio(x, sample_rate))
    if stats is not None:
        stats.seconds += time.perf_counter() - start
        stats.clips += len(waves)
        stats.audio_seconds += len(waves) * length / sample_rate
    if out.shape[0] != len(waves):
        raise RuntimeError(f"embed_audio returned {out.shape[0]} rows for {len(waves)} clips")
    return out


def embed_stream(model, items: Iterable[tuple[object, np.ndarray]], sample_rate: int,
                 batch_size: int = 32, stats: AudioStats | None = None,
                 ) -> Iterator[tuple[object, np.ndarray]]:
    """(key, embedding) for every (key, wave) of `items`, embedded in batches of `batch_size`.

    Only one batch of audio is held at a time, so a test split of any size fits in memory."""
    keys, waves = [], []
    for key, wave in items:
        keys.append(key)
        waves.append(np.asarray(wave, dtype=np.float32))
        if len(waves) == batch_size:
            yield from zip(keys, embed_batch(model, waves, sample_rate, stats))
            keys, waves = [], []
    if waves:
        yield from zip(keys, embed_batch(model, waves, sample_rate, stats))


def windows(x: np.ndarray, length: int, fill: str = "repeatpad") -> list[np.ndarray]:
    """Cut a long clip into consecutive windows of `length` samples (the last one aligned to the
    end, so nothing is padded or dropped); a short clip becomes one window, padded by `fill`.

    Embedding every window and averaging is deterministic, unlike LAION-CLAP's random crop of
    clips longer than its input (laion-clap issues 166, 90)."""
    from teminal.pipeline.audio import fit_to_length

    x = np.asarray(x, dtype=np.float32)
    if len(x) <= length:
        return [fit_to_length(x, length, fill)]
    starts = list(range(0, len(x) - length + 1, length))
    if starts[-1] + length < len(x):
        starts.append(len(x) - length)
    return [x[s:s + length] for s in starts]


def embed_long_clips(model, clips: Iterable[tuple[object, np.ndarray]], length: int,
                     sample_rate: int, batch_size: int = 32, fill: str = "repeatpad",
                     stats: AudioStats | None = None, progress: bool = True, total: int | None = None,
                     desc: str = "audio") -> dict[object, np.ndarray]:
    """{key: L2-normalised mean of the clip's window embeddings} for clips of any length."""
    def window_items():
        for key, x in clips:
            for i, w in enumerate(windows(x, length, fill)):
                yield (key, i), w

    sums: dict[object, np.ndarray] = {}
    with progress_bar(total, desc, "clip", enabled=progress, leave=False) as bar:
        for (key, i), e in embed_stream(model, window_items(), sample_rate, batch_size, stats):
            if i == 0:
                bar.update(1)
            sums[key] = sums[key] + e if key in sums else e.astype(np.float64)
    return {k: normalize(v) for k, v in sums.items()}


def normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.where(n > 0, n, 1.0)).astype(np.float32)


def decoded_sources(items: Iterable[tuple[str, str]], sample_rate: int,
                    failures: dict[str, int], pool=None) -> Iterator[tuple[str, np.ndarray]]:
    """(source_id, waveform at `sample_rate`) for each (source_id, path) that decodes; the
    others are counted in `failures` by reason, so a report can say what was left out.
    `pool` (a `DecodePool`) decodes in worker processes, in the same order (None: here)."""
    from teminal.evaluate.workers import DecodePool

    jobs = ((source_id, path, sample_rate) for source_id, path in items)
    for source_id, wave, reason in (pool or DecodePool(0)).map(decode_source, jobs):
        if reason is None:
            yield source_id, wave
        else:
            failures[reason] = failures.get(reason, 0) + 1


class DecodedSource(NamedTuple):
    source_id: str
    wave: np.ndarray | None
    reason: str | None            # the reject reason when it did not decode

    @property
    def clips(self) -> int:
        return int(self.wave is not None)


def decode_source(job: tuple[str, str, int]) -> DecodedSource:
    """One (source_id, path, sample_rate) job of `decoded_sources` (module-level for workers)."""
    from teminal.pipeline.audio import load_source
    from teminal.pipeline.audio import AudioError

    source_id, path, sample_rate = job
    try:
        return DecodedSource(source_id, load_source(path, sample_rate), None)
    except AudioError as e:
        return DecodedSource(source_id, None, str(e).split(":")[0])
