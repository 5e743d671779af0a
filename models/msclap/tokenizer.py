"""msclap's text preprocessing (CLAPWrapper.preprocess_text) on local tokenizer files."""
from __future__ import annotations

from pathlib import Path

import torch

from teminal.models.errors import MissingFile
from teminal.models.msclap.library import VERSIONS

TOKENIZER_HOWTO = ("on a machine with internet: `hf download {repo} {files} --local-dir DIR`, copy "
                   "DIR here and pass msclap:PATH.pth?version={version}&text=DIR")

TOKENIZER_FILES = {"2022": ("vocab.txt",), "2023": ("vocab.json", "merges.txt")}
TOKENIZER_REPOS = {"2022": ("bert-base-uncased", "google-bert/bert-base-uncased"),
                   "2023": ("gpt2", "openai-community/gpt2")}


class MsClapTokenizer:
    """msclap's text preprocessing (CLAPWrapper.preprocess_text) on local tokenizer files."""

    def __init__(self, folder: Path, version: str):
        self.folder, self.version = Path(folder), version
        self.max_length = VERSIONS[version]["text_len"]
        if version == "2022":
            from transformers import BertTokenizer

            self._tok = BertTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self.keys = ("input_ids", "token_type_ids", "attention_mask")
        else:
            from transformers import GPT2Tokenizer

            self._tok = GPT2Tokenizer.from_pretrained(str(self.folder), local_files_only=True)
            self._tok.add_special_tokens({"pad_token": "!"})
            self.keys = ("input_ids", "attention_mask")

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.version == "2023":
            texts = [t + " <|endoftext|>" for t in texts]
        enc = self._tok(list(texts), add_special_tokens=True, max_length=self.max_length,
                        padding="max_length", truncation=True, return_tensors="pt")
        return {k: enc[k] for k in self.keys}

    def files(self) -> list[Path]:
        return [self.folder / f for f in TOKENIZER_FILES[self.version]]


def cached_tokenizer_dir(version: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for repo in TOKENIZER_REPOS[version]:
        paths = [try_to_load_from_cache(repo, f) for f in TOKENIZER_FILES[version]]
        if all(isinstance(p, str) for p in paths) and len({Path(p).parent for p in paths}) == 1:
            return Path(paths[0]).parent
    return None


def find_tokenizer_dir(text: str | None, version: str) -> tuple[Path | None, list[MissingFile]]:
    files = TOKENIZER_FILES[version]
    how = TOKENIZER_HOWTO.format(repo=TOKENIZER_REPOS[version][0], files=" ".join(files),
                                 version=version)
    if text:
        folder = Path(text).expanduser()
        missing = [MissingFile(f"msclap {version} tokenizer file", str(folder / f), how)
                   for f in files if not (folder / f).is_file()]
        return (None if missing else folder), missing
    cached = cached_tokenizer_dir(version)
    if cached is not None:
        return cached, []
    return None, [MissingFile(f"msclap {version} tokenizer {f}",
                              "not found (no ?text=DIR given, not in the Hugging Face cache)", how)
                  for f in files]
