"""A post-trained laion-family model as the `.pt` laion-clap's own `CLAP_Module.load_ckpt` reads.

laion-clap 1.1.7's loader (hook.py `load_ckpt` -> clap_module/factory.py `load_state_dict`)
takes `ckpt["state_dict"]` (or the file itself), strips a `module.` prefix, then deletes
`text_branch.embeddings.position_ids` unconditionally when transformers >= 4.31 (a KeyError
when it is absent) and loads the rest strictly into the CLAP that `CLAP_Module(amodel=...,
tmodel="roberta")` built. So the file holds laion's own names, with that buffer put back
(transformers 5 no longer saves it), and nothing else: no `audio_head.*`.

Only family "laion" (HTSAT + RoBERTa, the architectures CLAP_Module builds) exports here; the
small model's custom config is not one of laion-clap's, its checkpoint folder is its format.
"""
from __future__ import annotations

from pathlib import Path

import torch

from teminal.models.errors import ModelSpecError

POSITION_IDS = "text_branch.embeddings.position_ids"
SUFFIX = ".pt"


def amodel_name(model) -> str:
    """laion-clap's name for the audio tower (`CLAP_Module(amodel=...)`), e.g. HTSAT-tiny."""
    audio = model.config["clap"]["audio_cfg"]
    return f"{audio['model_type']}-{audio['model_name']}"


def check_exportable(model) -> None:
    if model.family != "laion":
        raise ModelSpecError(
            f"--format laion writes what laion-clap's CLAP_Module builds (HTSAT + RoBERTa, "
            f"family laion); model {model.name!r} is family {model.family} (a custom config "
            f"laion-clap cannot rebuild): keep its checkpoint folder, which load_model reads")


def load_ckpt_state(model) -> dict[str, torch.Tensor]:
    """The weights as load_ckpt reads them: laion's names, the position ids put back."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.clap.state_dict().items()}
    if POSITION_IDS not in state:
        width = model.clap.text_branch.embeddings.position_embeddings.num_embeddings
        state[POSITION_IDS] = torch.arange(width).expand((1, -1)).contiguous()
    return state


def write(model, path: Path) -> Path:
    """`{"state_dict": ...}` at `path` (tensors only)."""
    check_exportable(model)
    torch.save({"state_dict": load_ckpt_state(model)}, path)
    return path


def how_to_load(model, path: Path) -> str:
    return (f"import laion_clap\n"
            f"model = laion_clap.CLAP_Module(enable_fusion=False, amodel={amodel_name(model)!r}, "
            f"tmodel=\"roberta\")\n"
            f"model.load_ckpt({str(path.name)!r})")
