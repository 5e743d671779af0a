"""Released LAION-CLAP checkpoints (630k-audioset-best.pt and kin): read, fix keys, infer the
architecture.

Known quirks handled here:
- weights saved from DDP carry a `module.` prefix;
- `text_branch.embeddings.position_ids` is a saved buffer in old transformers and a
  non-persistent one since 4.31 ("Unexpected key ... position_ids", LAION-AI/CLAP issues 113,
  127); laion's own loader always deletes it, which breaks models that do have it. We drop it
  when the model has no such saved key and add the model's own when it has one.
- fusion checkpoints (`*-fusion-*.pt`) need laion's fusion input features; they are refused
  with a clear message rather than loaded wrongly.
- the file is read with tensors only (teminal.models.tensor_files); one that holds other pickled
  objects is refused with the command that converts a trusted copy.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from teminal.models.errors import MissingFile, ModelSpecError
from teminal.models.tensor_files import state_dict_in
from teminal.models.laion.tokenizers import ROBERTA_BASE_CONFIG

log = logging.getLogger(__name__)

CHECKPOINT_HOWTO = ("download 630k-audioset-best.pt from the Hugging Face link in the "
                    "LAION-AI/CLAP README (https://github.com/LAION-AI/CLAP; the file is at "
                    "https://huggingface.co/lukewys/laion_clap/blob/main/630k-audioset-best.pt),"
                    " then pass --model laion:/path/to/630k-audioset-best.pt")
HTSAT_BY_WIDTH = {96: "HTSAT-tiny", 128: "HTSAT-base", 256: "HTSAT-large"}
TEXT_MAX_LENGTH = 77  # LAION-CLAP's tokenizer max_length


def missing_checkpoint(path: Path) -> list[MissingFile]:
    if path.is_file():
        return []
    return [MissingFile("LAION-CLAP checkpoint", str(path), CHECKPOINT_HOWTO)]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a LAION checkpoint file: its 'state_dict' entry (or the file itself when
    it is a bare state dict), `module.` prefixes removed."""
    return strip_module_prefix(state_dict_in(path, None, "LAION-CLAP checkpoint",
                                             CHECKPOINT_HOWTO))


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def fix_keys(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Make a state dict fit `model`'s saved keys for the known, harmless differences: the
    `module.` prefix and `position_ids` buffers that one transformers version saves and another
    does not. Anything else is left for the strict load to report."""
    state = strip_module_prefix(state)
    own = model.state_dict()
    fixed = {}
    for key, value in state.items():
        if key not in own and key.endswith((".position_ids", ".token_type_ids")):
            log.debug("dropping %s: a non-persistent buffer in this transformers version", key)
            continue
        fixed[key] = value
    for key in own:
        if key not in fixed and key.endswith(".position_ids"):
            log.debug("adding %s from the model: the checkpoint predates it", key)
            fixed[key] = own[key]
    return fixed


def reject_fusion(state: dict[str, torch.Tensor], source: str) -> None:
    if any("fusion_model" in k or ".mel_conv" in k for k in state):
        raise ModelSpecError(
            f"{source} is a feature-fusion LAION-CLAP checkpoint (e.g. 630k-audioset-fusion-best"
            ".pt); it needs laion's fusion input features, which this adapter does not build. "
            "Use the non-fusion 630k-audioset-best.pt.")


def audio_tower_config(state: dict[str, torch.Tensor], source: str) -> tuple[str, dict]:
    """(laion config name, its config dict) of the checkpoint's audio tower (HTSAT sizes)."""
    from teminal.models.laion.library import laion_model_config

    weight = state.get("audio_branch.patch_embed.proj.weight")
    if weight is None:
        raise ModelSpecError(f"{source}: the audio tower is not HTSAT (no audio_branch.patch_"
                             "embed); only HTSAT LAION checkpoints are supported")
    name = HTSAT_BY_WIDTH.get(int(weight.shape[0]))
    if name is None:
        raise ModelSpecError(f"{source}: unknown HTSAT width {weight.shape[0]} "
                             f"(known: {HTSAT_BY_WIDTH})")
    return name, laion_model_config(name)


def roberta_config_for(state: dict[str, torch.Tensor], source: str) -> dict:
    """roberta-base's config with the sizes the checkpoint's text tower actually has."""
    words = state.get("text_branch.embeddings.word_embeddings.weight")
    if words is None:
        raise ModelSpecError(f"{source}: the text tower is not RoBERTa (no text_branch."
                             "embeddings.word_embeddings); only RoBERTa LAION checkpoints are "
                             "supported")
    layers = {int(k.split(".")[3]) for k in state if k.startswith("text_branch.encoder.layer.")}
    cfg = dict(ROBERTA_BASE_CONFIG)
    cfg["vocab_size"] = int(words.shape[0])
    cfg["hidden_size"] = int(words.shape[1])
    cfg["num_hidden_layers"] = max(layers) + 1 if layers else 0
    cfg["max_position_embeddings"] = int(
        state["text_branch.embeddings.position_embeddings.weight"].shape[0])
    cfg["type_vocab_size"] = int(
        state["text_branch.embeddings.token_type_embeddings.weight"].shape[0])
    cfg["intermediate_size"] = int(
        state["text_branch.encoder.layer.0.intermediate.dense.weight"].shape[0])
    if cfg["hidden_size"] != 768:
        raise ModelSpecError(f"{source}: RoBERTa width {cfg['hidden_size']}; laion-clap's CLAP "
                             "supports 768 only")
    return cfg


def default_trainable(clap_cfg: dict, roberta_cfg: dict) -> list[str]:
    """The paper's subset on LAION-CLAP: the last HTSAT stage, its final norm and the audio
    projection; the last RoBERTa layer, the pooler and the text projection; the temperature."""
    last_text = roberta_cfg["num_hidden_layers"] - 1
    audio = (["audio_branch.layers.3.*", "audio_branch.norm.*"]
             if clap_cfg["audio_cfg"]["model_type"] == "HTSAT" else ["audio_branch.fc1.*"])
    return audio + ["audio_projection.*", f"text_branch.encoder.layer.{last_text}.*",
                    "text_branch.pooler.*", "text_projection.*", "logit_scale_a"]


def laion_config_for(state: dict[str, torch.Tensor], source: str) -> dict:
    """The resolved spec (config dict) of a LAION checkpoint, inferred from its weights."""
    reject_fusion(state, source)
    audio_name, base = audio_tower_config(state, source)
    roberta = roberta_config_for(state, source)
    projection = state.get("audio_projection.0.weight")
    return laion_config(audio_name, base, roberta,
                        int(projection.shape[0]) if projection is not None else 512)


def random_laion_config(audio_name: str = "HTSAT-tiny", tokenizer_dir: str | None = None) -> dict:
    """The spec of a LAION-CLAP architecture without a checkpoint (laion's bundled `audio_name`
    config + roberta-base): the shape of 630k-audioset-best.pt, randomly initialised by
    `load_model` (for benchmarks: speed and memory do not depend on the weights)."""
    from teminal.models.laion.library import laion_model_config

    config = laion_config(audio_name, laion_model_config(audio_name), dict(ROBERTA_BASE_CONFIG),
                          512)
    config["name"] = f"random-{config['name']}"
    if tokenizer_dir:
        config["text"]["dir"] = str(tokenizer_dir)
    return config


def laion_config(audio_name: str, base: dict, roberta: dict, joint_embed_shape: int) -> dict:
    """The resolved spec of a non-fusion LAION-CLAP: laion's `base` config for `audio_name`,
    a RoBERTa text tower of config `roberta`, and the joint embedding size."""
    clap = {
        "embed_dim": base["embed_dim"],
        "audio_cfg": base["audio_cfg"],
        "text_cfg": {**base["text_cfg"], "model_type": "roberta"},
        "joint_embed_shape": int(joint_embed_shape),
        "enable_fusion": False,
        "fusion_type": "None",
    }
    return {
        "name": f"laion-{audio_name}-roberta",
        "clap": clap,
        "text": {"tokenizer": "roberta", "max_length": TEXT_MAX_LENGTH, "roberta_config": roberta},
        "audio": {"crop": "center", "spec_augment": "laion"},
        "trainable": default_trainable(clap, roberta),
    }
