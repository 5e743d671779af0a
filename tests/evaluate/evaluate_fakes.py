"""Fake embedding models whose ZSTE answers are known, and hand-made test sets.

A fake reads the recipe of a clip from its first samples (see `encode`):
  wave[0] relation code, wave[1] / wave[2] class index + 1 of the first / second event,
  wave[3] a per-item nonce (only the random model looks at it).
Texts are understood through a table of every wording the evaluators use (the pipeline's
template sets plus the evaluation-only ones); an unknown text raises, so a wording drift
between evaluator and pipeline fails loudly.

Embedding space (K classes): [first-slot one-hot K | second-slot K | bag-of-classes K |
order | overlay]. The perfect model maps "x before y" and the concatenation x-then-y to the
same point; the order-blind model drops the slot blocks for audio, so forward and reversed
concatenations embed identically; the random model hashes everything to random unit vectors.
"""
from __future__ import annotations

import hashlib
from itertools import permutations

import numpy as np
import torch

from teminal.evaluate.testset import ItemTestSet, PairGroup, SingleItem

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


def text_table(vocab):
    """text -> (kind, x, y): every rendering the evaluators can ask for."""
    from teminal.evaluate.zste import CLASS_PROMPT, EVAL_ONLY_ORDER, EVAL_ONLY_OVERLAY, POSITION_PROMPTS
    from teminal.pipeline.captions import templates_for

    order = [t.text for t in templates_for("forward", "extended")] + [t for _, t in EVAL_ONLY_ORDER]
    overlay = [t.text for t in templates_for("overlay", "extended")] + [EVAL_ONLY_OVERLAY[1]]
    table = {}
    for c in range(len(vocab)):
        table[CLASS_PROMPT.format(label=vocab[c])] = ("class", c, None)
        table[POSITION_PROMPTS[0].format(c=vocab[c])] = ("first", c, None)
        table[POSITION_PROMPTS[1].format(c=vocab[c])] = ("second", c, None)
    for x, y in permutations(range(len(vocab)), 2):
        for t in order:
            table[t.format(a=vocab[x], b=vocab[y])] = ("order", x, y)
        for t in overlay:
            table[t.format(a=vocab[x], b=vocab[y])] = ("overlay", x, y)
    return table


class FakeModel:
    """Perfect by default; subclasses change what audio embeddings know."""

    def __init__(self, vocab=VOCAB, sample_rate=SAMPLE_RATE, clip_samples=WAVE_LEN):
        self.vocab = list(vocab)
        self.k = len(self.vocab)
        self.dim = 3 * self.k + 2
        self.sample_rate = sample_rate
        self.clip_samples = clip_samples
        self.config = {}
        self.table = text_table(self.vocab)
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

    # -- adapter contract -----------------------------------------------------------------------
    def embed_audio(self, wave, sample_rate):
        assert sample_rate == self.sample_rate
        self.audio_calls += 1
        rows = []
        for w in np.asarray(wave):
            relation = RELATION_OF[float(w[0])]
            a, b = int(w[1]) - 1, int(w[2]) - 1
            rows.append(self.audio_vector(relation, a, b if b >= 0 else None, int(w[3])))
        return torch.from_numpy(np.stack(rows))

    def embed_text(self, texts):
        self.text_calls.extend(texts)
        return torch.from_numpy(np.stack([self.text_vector(t) for t in texts]))

    def text_vector(self, text) -> np.ndarray:
        if text not in self.table:
            raise KeyError(f"fake model does not understand {text!r}")
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
    """Random unit vectors, deterministic per audio item and per text: chance everywhere."""

    def __init__(self, *args, dim=64, **kwargs):
        super().__init__(*args, **kwargs)
        self.dim = dim

    def embed_audio(self, wave, sample_rate):
        # works on any audio (coded fakes and real shards): hash the samples themselves
        rows = [_hash_unit("audio/" + wave_key(w), self.dim) for w in np.asarray(wave)]
        return torch.from_numpy(np.stack(rows))

    def text_vector(self, text):
        return _hash_unit(f"text/{text}", self.dim)


def make_testset(vocab=VOCAB, singles_per_class=2, repeats=1, **kwargs) -> ItemTestSet:
    """Every class `singles_per_class` times; every ordered pair of classes `repeats` times."""
    singles, groups, nonce = [], [], 0
    for c, label in enumerate(vocab):
        for i in range(singles_per_class):
            nonce += 1
            singles.append((SingleItem(f"src-{c}-{i}", label), encode("single", c, nonce=nonce)))
    for r in range(repeats):
        for x, y in permutations(range(len(vocab)), 2):
            nonce += 1
            key = f"g-{r}-{x:02d}-{y:02d}"
            waves = {rel: encode(rel, x, y, nonce) for rel in ("forward", "reversed", "overlay")}
            groups.append((PairGroup(key, vocab[x], vocab[y]), waves))
    return ItemTestSet(vocab, singles, groups, SAMPLE_RATE, **kwargs)



def wave_key(w) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(w, dtype=np.float32)).tobytes()).hexdigest()


class OracleModel(FakeModel):
    """Perfect on real audio: it is told each waveform's content (by the hash of its samples),
    e.g. from the shard JSON rows, and answers like the perfect model."""

    def __init__(self, vocab, sample_rate, audio_concepts: dict, clip_samples: int = WAVE_LEN):
        super().__init__(vocab, sample_rate, clip_samples)
        self.audio_concepts = audio_concepts   # wave_key -> ("class", x) | ("order", x, y) | ...

    def embed_audio(self, wave, sample_rate):
        assert sample_rate == self.sample_rate
        return torch.from_numpy(np.stack([self.concept(*self.audio_concepts[wave_key(w)])
                                          for w in np.asarray(wave)]))


class CaptionModel(FakeModel):
    """Retrieval oracle: audio and captions map to a one-hot of their clip (unknown text: zero
    vector plus a small bias so it never wins)."""

    def __init__(self, sample_rate, audio_clip: dict, caption_clip: dict, n_clips: int,
                 clip_samples: int):
        self.sample_rate, self.clip_samples, self.config = sample_rate, clip_samples, {}
        self.audio_clip, self.caption_clip, self.dim = audio_clip, caption_clip, n_clips + 1

    def _onehot(self, i):
        v = np.zeros(self.dim, dtype=np.float32)
        v[i] = 1
        return v

    def embed_audio(self, wave, sample_rate):
        return torch.from_numpy(np.stack([self._onehot(self.audio_clip[wave_key(w)])
                                          for w in np.asarray(wave)]))

    def embed_text(self, texts):
        return torch.from_numpy(np.stack([self._onehot(self.caption_clip.get(t, self.dim - 1))
                                          for t in texts]))
