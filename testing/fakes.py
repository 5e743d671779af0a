"""Fake embedding models whose answers are known, on coded clips.

A fake reads the recipe of a clip from its first samples (see `encode`):
  wave[0] relation code, wave[1] / wave[2] class index + 1 of the first / second event,
  wave[3] a per-item nonce (only the random model looks at it).
Texts are understood through a table built from the wordings an evaluator uses (`Wordings`:
class prompt, position prompts, order and overlay templates), which the caller supplies: these
doubles know no evaluator. An unknown text raises, so a wording drift fails loudly.

Embedding space (K classes): [first-slot one-hot K | second-slot K | bag-of-classes K |
order | overlay]. The perfect model maps "x before y" and the concatenation x-then-y to the
same point; the order-blind model drops the slot blocks for audio, so forward and reversed
concatenations embed identically; the random model hashes everything to random unit vectors.

Every fake is a `WeightlessModel`: the whole AudioTextModel interface (teminal.models.adapter's
base), with no weights to train, no order-aware head, and coded clips read as given (no
resampling, no fitting).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import torch

from teminal.models.adapter import AudioTextAdapter

CODES = {"single": 1.0, "forward": 2.0, "reversed": 3.0, "overlay": 4.0}
RELATION_OF = {v: k for k, v in CODES.items()}
VOCAB = ["chirping birds", "church bells", "clock tick", "cow", "crying baby", "dog",
         "door wood knock", "rain", "rooster", "siren"]
WAVE_LEN = 64
SAMPLE_RATE = 16000


def encode(relation: str, a: int, b: int | None = None, nonce: int = 0) -> np.ndarray:
    w = np.zeros(WAVE_LEN, dtype=np.float32)
    w[0], w[1], w[2], w[3] = CODES[relation], a + 1, (b + 1) if b is not None else 0, nonce
    return w


def wave_key(w) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(w, dtype=np.float32)).tobytes()).hexdigest()


@dataclass(frozen=True)
class Wordings:
    """The texts an evaluator asks about, as format strings."""
    class_prompt: str                # "{label}"
    position: tuple[str, str]        # "{c}" is the first / the second sound
    order: tuple[str, ...]           # "{a}" happens before "{b}"
    overlay: tuple[str, ...]         # "{a}" and "{b}" at the same time


def text_table(vocab, wordings: Wordings) -> dict[str, tuple]:
    """text -> (kind, x, y): every rendering of `wordings` over the classes of `vocab`."""
    table = {}
    for c in range(len(vocab)):
        table[wordings.class_prompt.format(label=vocab[c])] = ("class", c, None)
        table[wordings.position[0].format(c=vocab[c])] = ("first", c, None)
        table[wordings.position[1].format(c=vocab[c])] = ("second", c, None)
    for x, y in permutations(range(len(vocab)), 2):
        for t in wordings.order:
            table[t.format(a=vocab[x], b=vocab[y])] = ("order", x, y)
        for t in wordings.overlay:
            table[t.format(a=vocab[x], b=vocab[y])] = ("overlay", x, y)
    return table


class WeightlessModel(AudioTextAdapter):
    """The AudioTextModel interface for doubles whose embeddings are computed from their input:
    `_encode_audio(waves)` and `_encode_text(texts)` say how. No weights (set_trainable trains
    nothing), no head, `save` writes config.json alone. `checks_rate`: refuse audio at another
    rate than `sample_rate` (a coded clip is read as given, never resampled)."""

    family = "test-double"
    supports_audio_head = False
    checks_rate = False

    def __init__(self, sample_rate: int, clip_samples: int, dim: int):
        super().__init__({})  # no "extra": a double records no training
        self.sample_rate, self.clip_samples, self.dim = sample_rate, clip_samples, dim
        self.tokenizer = list  # texts are their own tokens
        self.register_buffer("_log_scale", torch.tensor(math.log(1 / 0.07)), persistent=False)

    @property
    def backbone(self):
        return self

    @property
    def embed_dim(self) -> int:
        return self.dim

    @property
    def audio_feature_dim(self) -> int:
        return self.dim

    def _log_logit_scale(self) -> torch.Tensor:
        return self._log_scale

    def prepare_audio(self, wave, sample_rate=None, lengths=None) -> torch.Tensor:
        if self.checks_rate and sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(f"{type(self).__name__} reads coded clips at {self.sample_rate} Hz, "
                             f"got {sample_rate} Hz")
        return torch.as_tensor(np.asarray(wave, dtype=np.float32))

    def _write_files(self, directory, config) -> None:
        pass  # nothing but config.json


class FakeModel(WeightlessModel):
    """Perfect by default; subclasses change what audio embeddings know. `wordings` (here or as
    a class attribute of a subclass) are the texts it understands."""

    checks_rate = True
    wordings: Wordings | None = None

    def __init__(self, vocab=VOCAB, sample_rate=SAMPLE_RATE, clip_samples=WAVE_LEN,
                 wordings: Wordings | None = None):
        vocab = list(vocab)
        super().__init__(sample_rate, clip_samples, 3 * len(vocab) + 2)
        self.vocab, self.k = vocab, len(vocab)
        wordings = wordings or type(self).wordings
        self.table = text_table(self.vocab, wordings) if wordings is not None else {}
        self.text_calls = []        # every text passed to embed_text, in order
        self.audio_calls = 0

    # -- concept vectors ------------------------------------------------------------------------
    def concept(self, kind, x, y=None) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        k = self.k
        if kind == "class":
            v[2 * k + x] = 1
        elif kind == "first":
            v[x] = 1
        elif kind == "second":
            v[k + x] = 1
        elif kind == "order":
            v[x] = v[k + y] = v[2 * k + x] = v[2 * k + y] = v[3 * k] = 1
        elif kind == "overlay":
            v[2 * k + x] = v[2 * k + y] = v[3 * k + 1] = 1
        elif kind == "blind":
            v[2 * k + x] = v[2 * k + y] = v[3 * k] = 1
        return v / np.linalg.norm(v)

    def audio_vector(self, relation, a, b, nonce) -> np.ndarray:
        if relation == "single":
            return self.concept("class", a)
        if relation == "forward":
            return self.concept("order", a, b)
        if relation == "reversed":
            return self.concept("order", b, a)
        return self.concept("overlay", a, b)

    # -- the two towers -------------------------------------------------------------------------
    def _encode_audio(self, wave) -> torch.Tensor:
        self.audio_calls += 1
        rows = []
        for w in np.asarray(wave):
            relation = RELATION_OF[float(w[0])]
            a, b = int(w[1]) - 1, int(w[2]) - 1
            rows.append(self.audio_vector(relation, a, b if b >= 0 else None, int(w[3])))
        return torch.from_numpy(np.stack(rows))

    def _encode_text(self, texts) -> torch.Tensor:
        self.text_calls.extend(texts)
        return torch.from_numpy(np.stack([self.text_vector(t) for t in texts]))

    def text_vector(self, text) -> np.ndarray:
        if text not in self.table:
            raise KeyError(f"fake model does not understand {text!r}" + (
                "" if self.table else " (it was given no wordings: FakeModel(wordings=...))"))
        return self.concept(*self.table[text])


class OrderBlindModel(FakeModel):
    """Knows the classes and overlay vs concatenation, but not which event came first."""

    def audio_vector(self, relation, a, b, nonce):
        if relation in ("forward", "reversed"):
            return self.concept("blind", a, b)
        return super().audio_vector(relation, a, b, nonce)


def _hash_unit(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class RandomModel(FakeModel):
    """Random unit vectors, deterministic per audio item and per text: chance everywhere. It
    reads any audio (coded fakes and real shards, at any rate) and any text."""

    checks_rate = False

    def __init__(self, *args, dim=64, **kwargs):
        super().__init__(*args, **kwargs)
        self.dim = dim

    def _encode_audio(self, wave) -> torch.Tensor:
        # works on any audio (coded fakes and real shards): hash the samples themselves
        rows = [_hash_unit("audio/" + wave_key(w), self.dim) for w in np.asarray(wave)]
        return torch.from_numpy(np.stack(rows))

    def text_vector(self, text):
        return _hash_unit(f"text/{text}", self.dim)


class OracleModel(FakeModel):
    """Perfect on real audio: it is told each waveform's content (by the hash of its samples),
    e.g. from the shard JSON rows, and answers like the perfect model."""

    def __init__(self, vocab, sample_rate, audio_concepts: dict, clip_samples: int = WAVE_LEN,
                 wordings: Wordings | None = None):
        super().__init__(vocab, sample_rate, clip_samples, wordings)
        self.audio_concepts = audio_concepts   # wave_key -> ("class", x) | ("order", x, y) | ...

    def _encode_audio(self, wave) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.concept(*self.audio_concepts[wave_key(w)])
                                          for w in np.asarray(wave)]))


class CaptionModel(WeightlessModel):
    """Retrieval oracle: audio and captions map to a one-hot of their clip (unknown text: zero
    vector plus a small bias so it never wins)."""

    def __init__(self, sample_rate, audio_clip: dict, caption_clip: dict, n_clips: int,
                 clip_samples: int):
        super().__init__(sample_rate, clip_samples, n_clips + 1)
        self.audio_clip, self.caption_clip = audio_clip, caption_clip

    def _onehot(self, i):
        v = np.zeros(self.dim, dtype=np.float32)
        v[i] = 1
        return v

    def _encode_audio(self, wave) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._onehot(self.audio_clip[wave_key(w)])
                                          for w in np.asarray(wave)]))

    def _encode_text(self, texts) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._onehot(self.caption_clip.get(t, self.dim - 1))
                                          for t in texts]))
