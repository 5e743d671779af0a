"""msclap weights files (CLAP_weights_2022.pth, CLAP_weights_2023.pth): read, fix keys, and
the architecture their tensors imply (text tower sizes; HTSAT sizes)."""
from __future__ import annotations

from pathlib import Path

import torch

from teminal.models.errors import ModelSpecError
from teminal.models.msclap.library import BERT_BASE_UNCASED, GPT2

WEIGHTS_HOWTO = ("on a machine with internet: `hf download microsoft/msclap "
                 "CLAP_weights_{version}.pth --local-dir DIR` (or github.com/microsoft/CLAP), copy "
                 "it here, then pass --model msclap:DIR/CLAP_weights_{version}.pth?version={version}")
TEXT_PREFIX = "caption_encoder.base."
# buffers that one transformers version saves and another does not (LAION-AI/CLAP #113 kin)
NON_PERSISTENT = (".position_ids", ".token_type_ids", ".attn.bias", ".attn.masked_bias")
HTSAT_PREFIX = "audio_encoder.base.htsat."


def htsat_sizes_for(state: dict[str, torch.Tensor], source: str) -> dict:
    """The HTSAT sizes of a 2023 checkpoint's audio tower, read from its tensors."""
    patch = state.get(HTSAT_PREFIX + "patch_embed.proj.weight")
    if patch is None:
        raise ModelSpecError(f"{source}: no {HTSAT_PREFIX}patch_embed; is it a Microsoft CLAP "
                             "2023 checkpoint (?version=2023)?")
    blocks: dict[int, set[int]] = {}
    for k in state:
        if k.startswith(HTSAT_PREFIX + "layers.") and ".blocks." in k:
            parts = k[len(HTSAT_PREFIX):].split(".")
            blocks.setdefault(int(parts[1]), set()).add(int(parts[3]))
    stages = sorted(blocks)
    heads = [int(state[f"{HTSAT_PREFIX}layers.{i}.blocks.0.attn.relative_position_bias_table"]
                 .shape[1]) for i in stages]
    return {"embed_dim": int(patch.shape[0]), "depths": [len(blocks[i]) for i in stages],
            "num_heads": heads}


def text_config_for(state: dict[str, torch.Tensor], version: str, source: str) -> dict:
    """The bundled text config with the sizes of the checkpoint's text tower."""
    def get(name):
        t = state.get(TEXT_PREFIX + name)
        if t is None:
            raise ModelSpecError(f"{source}: no {TEXT_PREFIX + name}; is it a Microsoft CLAP "
                                 f"{version} checkpoint (?version={version})?")
        return t

    if version == "2022":
        words = get("embeddings.word_embeddings.weight")
        layers = {int(k.split(".")[4]) for k in state if k.startswith(TEXT_PREFIX + "encoder.layer.")}
        cfg = {**BERT_BASE_UNCASED, "vocab_size": int(words.shape[0]),
               "hidden_size": int(words.shape[1]),
               "num_hidden_layers": max(layers) + 1 if layers else 0,
               "max_position_embeddings": int(get("embeddings.position_embeddings.weight").shape[0]),
               "type_vocab_size": int(get("embeddings.token_type_embeddings.weight").shape[0]),
               "intermediate_size": int(get("encoder.layer.0.intermediate.dense.weight").shape[0])}
        cfg["num_attention_heads"] = max(1, cfg["hidden_size"] // 64)
        return cfg
    words = get("wte.weight")
    layers = {int(k.split(".")[3]) for k in state if k.startswith(TEXT_PREFIX + "h.")}
    cfg = {**GPT2, "vocab_size": int(words.shape[0]), "n_embd": int(words.shape[1]),
           "n_layer": max(layers) + 1 if layers else 0,
           "n_positions": int(get("wpe.weight").shape[0]),
           "n_inner": int(get("h.0.mlp.c_fc.weight").shape[1])}
    cfg["n_head"] = max(1, cfg["n_embd"] // 64)
    return cfg


def text_width(text_config: dict) -> int:
    return int(text_config.get("hidden_size") or text_config["n_embd"])


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an msclap weights file ({"model": state_dict}), tensors only."""
    from teminal.models.tensor_files import state_dict_in

    return state_dict_in(path, "model", "msclap weights file")


def fix_keys(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
             ) -> dict[str, torch.Tensor]:
    """`state` made to fit a model whose state dict is `own` for the harmless differences: a
    `module.` prefix, and buffers one transformers version saves and another does not."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k in own or not k.endswith(NON_PERSISTENT)}
    for k in own:
        if k not in state and k.endswith(NON_PERSISTENT):
            state[k] = own[k]
    return state
