"""Families "small" and "laion" (laion-clap's CLAP behind `ClapModel`): their loaders.
`teminal.models.registry` parses the spec and calls `load` / `load_checkpoint` here.

    small                          the small CPU CLAP (configs/small-cnn6.json), random init
    NAME | /path/config.json       another bundled or user config, random init from its seed
    laion:/path/630k-audioset-best.pt[?text=DIR]
                                   a released LAION-CLAP checkpoint (HTSAT + RoBERTa); DIR holds
                                   RoBERTa's vocab.json + merges.txt (else $TEMINAL_ROBERTA_DIR,
                                   else a Hugging Face cache that has roberta-base)
    /path/to/checkpoint_dir        written by ClapModel.save (config.json + model.safetensors);
                                   a run folder with final/ inside works too

`model.config` is the resolved spec: everything needed to rebuild the architecture, plus
"source" (the spec it was loaded from) and "extra" (the TrainingProvenance `save(dir,
provenance)` recorded: {} for a model that was never trained).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from teminal.models.adapter import CONFIG_FILE, WEIGHTS_FILE, read_safetensors
from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError
from teminal.models.laion import checkpoint as laion_checkpoint
from teminal.models.laion.adapter import ClapModel
from teminal.models.registry import ParsedSpec
from teminal.models.laion.tokenizers import (POOLINGS, ROBERTA_FILES, BpeTokenizer, HfTokenizerFiles,
                                 RobertaTokenizerFiles, find_roberta_dir,
                                 missing_encoder_files, resolve_encoder_dir)

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
ALIASES = {"small": "small-cnn6", "small-minilm": "small-cnn6-minilm",
           "small-minilm-moment": "small-cnn6-minilm-moment"}


def bundled_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load(parsed: ParsedSpec) -> ClapModel:
    """Family "small" (a bundled or user config, random init) or "laion" (a LAION checkpoint)."""
    if parsed.family == "laion":
        return _load_laion(parsed)
    text_dir = parsed.options.get("text")
    if parsed.path is None:
        base = parsed.spec.partition("?")[0]
        name = ALIASES.get(base, base)
        return _from_config(_read_json(CONFIG_DIR / f"{name}.json"), parsed.spec, text_dir)
    return _from_config(_read_json(parsed.path), parsed.spec, text_dir)


def _looks_like_a_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.startswith((".", "~")) or Path(spec).exists()


def _missing_path(spec: str) -> Exception:
    """A spec naming a file system path that is not a model: say what is there instead."""
    path = Path(spec).expanduser()
    if path.is_file():
        kind = "a file" + (f" (a LAION checkpoint? pass laion:{spec})"
                           if spec.endswith((".pt", ".ckpt")) else "")
        return ModelSpecError(f"model {spec!r} is {kind}, not a checkpoint folder: give the "
                              f"folder holding config.json + model.safetensors (RUN_DIR or "
                              f"RUN_DIR/final), or a config .json")
    parent = next((p for p in path.parents if p.exists()), None)
    return ModelFilesNotFound(spec, [MissingFile(
        "checkpoint folder", str(path),
        f"no such folder ({'nearest existing parent: ' + str(parent) if parent else 'nothing of that path exists'}); "
        f"give a training run folder (RUN_DIR or RUN_DIR/final), 'small', a bundled config "
        f"{bundled_configs()} or laion:/path/630k-audioset-best.pt")])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelSpecError(f"{path} is not valid JSON: {e}") from None


def build(config: dict, tokenizer_dir: str | Path | None = None, spec: str = "",
          pretrained_text: bool = False) -> ClapModel:
    """A randomly initialised ClapModel for a resolved config, seeded by config['seed'] without
    touching the caller's random state. A Hugging Face text encoder (config text.encoder "hf")
    starts from its own pretrained weights when `pretrained_text` (a model built from a config),
    else from its recorded architecture (a checkpoint, whose weights are loaded next)."""
    tokenizer = make_tokenizer(config, tokenizer_dir, spec or config.get("name", "?"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.get("seed", 0)))
        text_module = _hf_text_module(config, tokenizer_dir, pretrained_text)
        return ClapModel(config, tokenizer, text_module)


def _hf_text_module(config: dict, folder, pretrained: bool):
    """The transformers encoder of a config whose text.encoder is "hf" (else None); its
    architecture is recorded in config["text"]["hf_config"] so a checkpoint rebuilds it
    without the original folder."""
    text = config.get("text", {})
    if text.get("encoder") != "hf":
        return None
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars in every log otherwise
    if pretrained:
        module = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                           use_safetensors=True)
    else:
        hf_config = dict(text["hf_config"])
        module = AutoModel.from_config(AutoConfig.for_model(hf_config.pop("model_type"),
                                                            **hf_config))
    text["hf_config"] = module.config.to_diff_dict() if pretrained else text["hf_config"]
    return module


def make_tokenizer(config: dict, tokenizer_dir: str | Path | None, spec: str):
    kind = config.get("text", {}).get("tokenizer", "bpe")
    if kind == "bpe":
        return BpeTokenizer(config["clap"]["text_cfg"]["context_length"])
    if kind == "roberta":
        folder, missing = find_roberta_dir(str(tokenizer_dir) if tokenizer_dir else None)
        if missing:
            raise ModelFilesNotFound(spec, missing)
        return RobertaTokenizerFiles(folder, config["text"].get("max_length", 77))
    if kind == "hf":
        return HfTokenizerFiles(tokenizer_dir, config["text"].get("max_length", 32))
    raise ModelSpecError(f"{spec}: unknown text tokenizer {kind!r} (bpe, roberta or hf)")


def _from_config(config: dict, spec: str, text_dir: str | None = None) -> ClapModel:
    if "clap" not in config:
        raise ModelSpecError(f"model config {spec!r} has no 'clap' section (laion-clap's CLAP "
                             "arguments; see models/laion/configs/small-cnn6.json)")
    config = {**config, "family": "small", "source": spec, "extra": {}, "weights": None}
    text = config.setdefault("text", {})
    if text.get("encoder") != "hf":
        return build(config, text_dir or text.get("dir"), spec)
    if text.get("pooling", "mean") not in POOLINGS:
        raise ModelSpecError(f"model config {spec!r}: text.pooling {text['pooling']!r} is not "
                             f"one of {POOLINGS}")
    folder = resolve_encoder_dir(text_dir or text.get("dir") or "")
    missing = missing_encoder_files(folder)
    if missing:
        raise ModelFilesNotFound(spec, missing)
    config["text"] = {**text, "tokenizer": "hf", "dir": str(folder.resolve())}
    return build(config, folder, spec, pretrained_text=True)


def _load_laion(parsed: ParsedSpec) -> ClapModel:
    spec, path, text_dir = parsed.spec, parsed.path, parsed.options.get("text")
    missing = laion_checkpoint.missing_checkpoint(path)
    _, tok_missing = find_roberta_dir(text_dir)
    if missing or tok_missing:  # report every missing file at once
        raise ModelFilesNotFound(spec, missing + tok_missing)
    state = laion_checkpoint.read_state_dict(path)
    config = laion_checkpoint.laion_config_for(state, str(path))
    config["family"] = "laion"
    config["source"] = spec
    config["checkpoint"] = str(path.resolve())
    config["weights"] = str(path.resolve())
    config["extra"] = {}
    model = build(config, text_dir, spec)
    model.load_weights(state, str(path))
    model.config["text"]["dir"] = str(model.tokenizer.folder.resolve())
    log.info("loaded %s (%s) from %s", model.config["name"], _count(model), path)
    return model


def load_checkpoint(parsed: ParsedSpec) -> ClapModel:
    """A project checkpoint folder of family small or laion (written by ClapModel.save)."""
    folder = parsed.path
    missing = [MissingFile("teminal checkpoint file", str(folder / name),
                           "a checkpoint folder is written by ClapModel.save / the trainer's "
                           "final/ export; pass that folder")
               for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise ModelFilesNotFound(str(folder), missing)
    config = _read_json(folder / CONFIG_FILE)
    weights = read_safetensors(folder / WEIGHTS_FILE)  # before building: a damaged file fails fast
    text_dir = config.get("text", {}).get("dir")
    if text_dir and not Path(text_dir).is_absolute():
        text_dir = folder / text_dir
    if config.get("text", {}).get("encoder") == "hf":
        missing = missing_encoder_files(Path(text_dir or folder / "tokenizer"), weights=False)
        if missing:
            raise ModelFilesNotFound(str(folder), missing)
    elif text_dir and not all((Path(text_dir) / f).is_file() for f in ROBERTA_FILES):
        text_dir = None  # fall back to $TEMINAL_ROBERTA_DIR / the Hugging Face cache
    config["source"] = str(folder)
    config["family"] = parsed.family
    config["weights"] = str((folder / WEIGHTS_FILE).resolve())
    model = build(config, text_dir, str(folder))
    if model.tokenizer.folder is not None:
        model.config["text"]["dir"] = str(model.tokenizer.folder.resolve())
    model.load_weights(weights, str(folder / WEIGHTS_FILE))
    log.info("loaded %s (%s) from %s", model.config.get("name"), _count(model), folder)
    return model


def _count(model: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters"
