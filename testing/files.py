"""Tiny offline files of every model family, written with each family's own library (random
weights, fake tokenizer vocabularies): what `load_model` reads, at test size, without a download.

    write_tiny_hf_clap(DIR)          a transformers ClapModel + ClapProcessor (hf:DIR)
    write_tiny_msclap(DIR, version)  msclap's own CLAP as {"model": state} (+ tokenizer files)
    write_tiny_hf_encoder(DIR)       a BERT encoder folder (the small family's pretrained tower)
    write_fake_roberta_tokenizer, write_fake_bert_vocab, write_fake_gpt2_tokenizer
    place_in_hf_cache(CACHE, ID, SRC)   a folder or file as `hf download ID` leaves it
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from teminal.models.laion.tokenizers import bytes_to_unicode, write_byte_level_tokenizer


def write_fake_roberta_tokenizer(folder: Path) -> Path:
    """RoBERTa-style vocab.json + merges.txt: specials, the byte-level alphabet, a few merges."""
    return write_byte_level_tokenizer(folder, merges=("Ġ d", "o g", "Ġd og"))


def tiny_hf_clap_config(vocab_size: int, text_layers: int = 2):
    """A transformers ClapConfig of about 0.1 M parameters (non-fusion HTSAT + RoBERTa);
    `text_layers` 12 gives the text tower clap-htsat-unfused's depth (its layer names)."""
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    text = ClapTextConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=text_layers,
                          num_attention_heads=2, intermediate_size=64, projection_dim=16,
                          max_position_embeddings=80)
    audio = ClapAudioConfig(depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                            hidden_size=64, patch_embeds_hidden_size=8, projection_dim=16,
                            enable_fusion=False)
    return ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                      projection_dim=16)


def write_tiny_hf_clap(folder: Path, seed: int = 0, max_length_s: int = 10,
                       text_layers: int = 2) -> Path:
    """A randomly initialised tiny transformers ClapModel + ClapProcessor (fake RoBERTa
    vocabulary, non-fusion feature extractor), written with save_pretrained: what hf:DIR reads."""
    from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    folder = Path(folder)
    tok_dir = write_fake_roberta_tokenizer(folder / "_tokenizer_src")
    tokenizer = RobertaTokenizer(vocab_file=str(tok_dir / "vocab.json"),
                                 merges_file=str(tok_dir / "merges.txt"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(tiny_hf_clap_config(len(tokenizer), text_layers)).eval()
    model.save_pretrained(str(folder))
    ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc",
                                                         padding="repeatpad",
                                                         max_length_s=max_length_s),
                  tokenizer=tokenizer).save_pretrained(str(folder))
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
    from teminal.models.laion import CONFIG_DIR

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
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    merges = ["Ġ d", "o g", "Ġd og"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def tiny_msclap_text_config(version: str, vocab_size: int) -> dict:
    """A one-layer, 32-wide text tower of the version's kind (BERT for 2022, GPT-2 for 2023)."""
    from teminal.models.msclap.library import BERT_BASE_UNCASED, GPT2

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
    from teminal.models.msclap.library import VERSIONS, build_clap

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
