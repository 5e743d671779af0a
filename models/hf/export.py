"""A post-trained hf-family model as transformers' own `save_pretrained` folder (model,
tokenizer, non-fusion feature extractor): plain `ClapModel.from_pretrained` and
`ClapProcessor.from_pretrained` load it. There is no place for an order-aware head."""
from __future__ import annotations

from pathlib import Path

SUFFIX = ""  # a folder


def check_exportable(model) -> None:
    pass


def write(model, path: Path) -> Path:
    return model.save_pretrained(path)


def how_to_load(model, path: Path) -> str:
    return (f"from transformers import ClapModel, ClapProcessor\n"
            f"model = ClapModel.from_pretrained({str(path.name)!r})\n"
            f"processor = ClapProcessor.from_pretrained({str(path.name)!r})")
