"""A post-trained msclap-family model as the `.pth` msclap's own modules load.

msclap 1.3.4's CLAPWrapper (`msclap.CLAP(model_fp=..., version=...)`) builds its `CLAP` from the
version's config, then `load_state_dict(torch.load(path)["model"], strict=False)`: the file
holds `{"model": state_dict}` under msclap's own parameter names, as the released
CLAP_weights_*.pth do, and nothing else (no `audio_head.*`). strict=False would skip a key
that does not fit without a word, so the names are exactly the model's own.
"""
from __future__ import annotations

from pathlib import Path

import torch

SUFFIX = ".pth"


def check_exportable(model) -> None:
    pass  # every msclap-family model is msclap's own CLAP module


def write(model, path: Path) -> Path:
    """`{"model": state_dict}` at `path` (tensors only)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.clap.state_dict().items()}
    torch.save({"model": state}, path)
    return path


def how_to_load(model, path: Path) -> str:
    sizes = model.config.get("audio_sizes")
    note = (f"# its HTSAT sizes {sizes} are not msclap's released ones, which CLAP() builds: "
            f"build msclap's CLAP with these sizes and load_state_dict(torch.load(...)['model'])\n"
            if sizes else "")
    return (note + f"from msclap import CLAP\n"
            f"clap = CLAP(model_fp={str(path.name)!r}, version={model.config['version']!r}, "
            f"use_cuda=False)")
