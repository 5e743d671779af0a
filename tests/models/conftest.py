"""Fixtures: the small model (built once per session; tests that change it take a copy) and a
fake RoBERTa tokenizer folder (byte-level alphabet, a few merges)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_model_session():
    from teminal.models import load_model

    return load_model("small")


@pytest.fixture
def small_model(small_model_session):
    """A private copy of the small model, in eval mode."""
    return copy.deepcopy(small_model_session).eval()


def _bytes_to_unicode() -> dict[int, str]:
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


def write_fake_roberta_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(set(_bytes_to_unicode().values())):
        vocab.setdefault(ch, len(vocab))
    vocab["<mask>"] = len(vocab)
    merges = ["Ġ d", "o g", "Ġd og"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


@pytest.fixture
def roberta_tokenizer_dir(tmp_path) -> Path:
    return write_fake_roberta_tokenizer(tmp_path / "roberta-tokenizer")
