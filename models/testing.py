"""Test doubles for the whole suite, shipped in the package (as lhotse ships lhotse.testing).

Evaluation fakes (FakeModel, OrderBlindModel, RandomModel, OracleModel, CaptionModel) whose
ZSTE answers are known, on coded clips (`encode`, `make_testset`); and ToyClap, a tiny trainable
model with the AudioTextModel interface for fast trainer tests. None of them is a real family:
`load_model` never returns one.

Fake embedding models whose ZSTE answers are known, and hand-made test sets.

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

ToyClap: Audio: log band energies of 4 time segments (so order is visible) -> linear. Text: hashed words
with their positions through a small MLP (so order is visible) -> mean -> linear. It trains in
milliseconds per step, which lets the trainer's mechanics (resume, ranks, NaN stop) be tested
without the real CLAP; the real model has its own end-to-end tests.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import zlib
from itertools import permutations
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


def make_testset(vocab=VOCAB, singles_per_class=2, repeats=1, **kwargs):
    """An evaluate ItemTestSet of coded clips: every class `singles_per_class` times; every
    ordered pair of classes `repeats` times."""
    from teminal.evaluate.testset import ItemTestSet, PairGroup, SingleItem

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


# ---- a tiny trainable model -----------------------------------------------------------------

TOY_VOCAB, TOY_MAX_WORDS, TOY_DIM, TOY_SEGMENTS, TOY_BANDS = 512, 12, 32, 4, 16


class ToyClap(nn.Module):
    sample_rate = 16000

    def __init__(self, clip_samples: int = 32000):
        super().__init__()
        self.clip_samples = clip_samples
        self.audio_proj = nn.Sequential(nn.Linear(TOY_SEGMENTS * TOY_BANDS, 64), nn.ReLU(),
                                        nn.Linear(64, TOY_DIM))
        self.words = nn.Embedding(TOY_VOCAB, 24)
        self.positions = nn.Embedding(TOY_MAX_WORDS, 8)
        self.token_mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1))
        self.text_proj = nn.Linear(64, TOY_DIM)
        self.logit_scale_a = nn.Parameter(torch.tensor(2.0))
        self.config = {"toy": True, "clip_samples": clip_samples}

    # the adapter's interface
    def tokenize(self, texts: list[str]) -> dict:
        ids = torch.zeros(len(texts), TOY_MAX_WORDS, dtype=torch.long)
        mask = torch.zeros(len(texts), TOY_MAX_WORDS)
        for i, t in enumerate(texts):
            words = t.lower().replace(".", "").split()[:TOY_MAX_WORDS]
            for j, w in enumerate(words):
                ids[i, j] = 1 + zlib.crc32(w.encode()) % (TOY_VOCAB - 1)
                mask[i, j] = 1.0
        return {"input_ids": ids, "attention_mask": mask}

    def audio_features(self, wave: torch.Tensor) -> torch.Tensor:
        segs = wave.reshape(wave.shape[0], TOY_SEGMENTS, -1)
        spec = torch.fft.rfft(segs, dim=-1).abs() ** 2
        bands = spec[..., : spec.shape[-1] // TOY_BANDS * TOY_BANDS].reshape(*spec.shape[:2], TOY_BANDS, -1)
        return torch.log1p(bands.mean(-1)).flatten(1)

    def encode_audio(self, wave):
        return F.normalize(self.audio_proj(self.audio_features(wave)), dim=-1)

    def encode_text(self, tokens):
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        h = self.token_mlp(torch.cat([self.words(ids), self.positions(pos)], -1))
        h = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.text_proj(h), dim=-1)

    def forward(self, audio=None, text_tokens=None, sample_rate=None):
        return (None if audio is None else self.encode_audio(audio),
                None if text_tokens is None else self.encode_text(text_tokens))

    def embed_audio(self, wave, sample_rate):
        return self.encode_audio(wave)

    def embed_text(self, texts):
        return self.encode_text(self.tokenize(texts))

    def logit_scale(self):
        return self.logit_scale_a.exp()

    def set_trainable(self, patterns=None):
        from teminal.models.trainable import resolve

        patterns = resolve(patterns, ["*"])
        for name, p in self.named_parameters():
            p.requires_grad = any(fnmatch.fnmatch(name, pat) for pat in patterns)
        n_total = sum(p.numel() for p in self.parameters())
        return sum(p.numel() for p in self.parameters() if p.requires_grad), n_total

    def save(self, directory, extra=None):
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()},
                  str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps({**self.config, "extra": extra or {}},
                                                          indent=1, default=str))


def toy_factory(spec: str, device="cpu") -> ToyClap:
    model = ToyClap()
    path = Path(spec)
    if (path / "model.safetensors").exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.to(device)


# ---- tiny offline files of the real families ------------------------------------------------

from teminal.models.text import _bytes_to_unicode, write_byte_level_tokenizer  # noqa: E402

def write_fake_roberta_tokenizer(folder: Path) -> Path:
    """RoBERTa-style vocab.json + merges.txt: specials, the byte-level alphabet, a few merges."""
    return write_byte_level_tokenizer(folder, merges=("Ġ d", "o g", "Ġd og"))


def tiny_hf_clap_config(vocab_size: int):
    """A transformers ClapConfig of about 0.1 M parameters (non-fusion HTSAT + RoBERTa)."""
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    text = ClapTextConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, projection_dim=16,
                          max_position_embeddings=80)
    audio = ClapAudioConfig(depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                            hidden_size=64, patch_embeds_hidden_size=8, projection_dim=16,
                            enable_fusion=False)
    return ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                      projection_dim=16)


def write_tiny_hf_clap(folder: Path, seed: int = 0, max_length_s: int = 10) -> Path:
    """A randomly initialised tiny transformers ClapModel + ClapProcessor (fake RoBERTa
    vocabulary, non-fusion feature extractor), written with save_pretrained: what hf:DIR reads."""
    from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    folder = Path(folder)
    tok_dir = write_fake_roberta_tokenizer(folder / "_tokenizer_src")
    tokenizer = RobertaTokenizer(vocab_file=str(tok_dir / "vocab.json"),
                                 merges_file=str(tok_dir / "merges.txt"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(tiny_hf_clap_config(len(tokenizer))).eval()
    model.save_pretrained(str(folder))
    ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc",
                                                         padding="repeatpad",
                                                         max_length_s=max_length_s),
                  tokenizer=tokenizer).save_pretrained(str(folder))
    import shutil

    shutil.rmtree(tok_dir)
    return folder


def write_fake_bert_vocab(folder: Path) -> Path:
    """A BERT vocab.txt (uncased): specials, letters and digits, their ## continuations and a
    few whole words, so every lower-case ASCII text tokenizes without [UNK]."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,!?'-")
    words = ["dog", "barks", "siren", "before", "after", "while", "rain", "the", "sound", "of"]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    (folder / "vocab.txt").write_text("\n".join(tokens + words) + "\n")
    return folder


def write_tiny_hf_encoder(folder: Path, seed: int = 0) -> Path:
    """A tiny random BERT encoder folder as `transformers` saves one (config.json,
    model.safetensors, tokenizer files): what the small family's pretrained text tower
    (`text.encoder = "hf"`, small-minilm) reads, at test size."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    vocab = write_fake_bert_vocab(folder / "vocab-src") / "vocab.txt"
    n = len(vocab.read_text().splitlines())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(BertConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=64))
    model.save_pretrained(str(folder), safe_serialization=True)
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(str(folder))
    shutil.rmtree(vocab.parent)
    return folder


def tiny_small_hf_config(folder: Path, encoder_dir: Path) -> Path:
    """A small-family model config (the bundled small-cnn6-minilm, text tower from
    `encoder_dir`): the config JSON path, to load as `PATH` or `PATH?text=DIR`."""
    import json

    from teminal.models.specs import CONFIG_DIR

    config = json.loads((CONFIG_DIR / "small-cnn6-minilm.json").read_text())
    config["name"] = "tiny-small-hf"
    config["text"]["dir"] = str(encoder_dir)
    config["trainable"] = [t for t in config["trainable"] if "layer.5" not in t] + [
        "text_branch.encoder.layer.1.*"]
    path = Path(folder) / "tiny-small-hf.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def write_fake_gpt2_tokenizer(folder: Path) -> Path:
    """GPT-2 vocab.json + merges.txt: the byte-level alphabet in GPT-2's order ("!" is id 0, as
    msclap's padding assumes), a few merges, then <|endoftext|>."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode().values())}
    merges = ["Ġ d", "o g", "Ġd og"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def tiny_msclap_text_config(version: str, vocab_size: int) -> dict:
    """A one-layer, 32-wide text tower of the version's kind (BERT for 2022, GPT-2 for 2023)."""
    from teminal.models.msclap_family import BERT_BASE_UNCASED, GPT2

    if version == "2022":
        return {**BERT_BASE_UNCASED, "vocab_size": vocab_size, "hidden_size": 32,
                "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 64,
                "max_position_embeddings": 128}
    return {**GPT2, "vocab_size": vocab_size, "n_embd": 32, "n_layer": 1, "n_head": 1,
            "n_inner": 64, "n_positions": 80}


TINY_HTSAT = {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}


def write_tiny_msclap(folder: Path, version: str, seed: int = 0) -> tuple[Path, Path]:
    """A randomly initialised Microsoft CLAP written in msclap's format: msclap's own `CLAP`
    module saved as {"model": state_dict} in CLAP_weights_<version>.pth, with fake tokenizer
    files. Tiny text tower; 2023: a tiny HTSAT (TINY_HTSAT); 2022: the real CNN14 (its
    channels are fixed: about 80 M parameters, 340 MB). Returns (weights, tokenizer dir)."""
    from teminal.models.msclap_family import VERSIONS, build_clap

    folder = Path(folder)
    tok = (write_fake_bert_vocab if version == "2022" else write_fake_gpt2_tokenizer)(
        folder / f"tokenizer-{version}")
    vocab = (len((tok / "vocab.txt").read_text().split()) if version == "2022"
             else len(json.loads((tok / "vocab.json").read_text())))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clap = build_clap({**VERSIONS[version], "transformer_embed_dim": 32},
                          tiny_msclap_text_config(version, vocab),
                          TINY_HTSAT if version == "2023" else None)
        # random running statistics too, so eval-mode batch norm is not the identity
        for m in clap.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = folder / f"CLAP_weights_{version}.pth"
    torch.save({"model": clap.state_dict()}, path)
    return path, tok


def place_in_hf_cache(cache: Path, repo_id: str, source: Path,
                      revision: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Copy `source` (a folder's files, or one file) into a Hugging Face hub cache as the
    snapshot `hf download repo_id` would leave (models--ORG--NAME/snapshots/<revision>/ +
    refs/main); returns the snapshot folder. Files are copied, not linked to blobs: lookups
    by id (snapshot_download / try_to_load_from_cache with local_files_only) read no blobs."""
    import shutil

    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    source = Path(source)
    if source.is_dir():
        shutil.copytree(source, snapshot, dirs_exist_ok=True)
    else:
        shutil.copy2(source, snapshot / source.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
