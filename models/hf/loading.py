"""Family "hf": a transformers ClapModel from a local `save_pretrained` folder, or a project
checkpoint folder written by `HfClapModel.save`.

    hf:DIR[?text=TOKDIR]   DIR: config.json + model.safetensors (what ClapModel.save_pretrained
                           writes; a pytorch_model.bin is read only when it holds tensors
                           alone, see teminal.models.tensor_files), its tokenizer files
                           (tokenizer.json, or vocab.json + merges.txt; else from TOKDIR) and
                           the ClapFeatureExtractor settings (processor_config.json or
                           preprocessor_config.json; CLAP's defaults when absent)

Fusion checkpoints (4-channel input, clap-htsat-fused) are refused with a clear message.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
from pathlib import Path

import torch

from teminal.models.adapter import CONFIG_FILE, read_safetensors
from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError
from teminal.models.hf.adapter import HEAD_FILE, HF_SUBDIR, HfClapModel, refuse_fusion
from teminal.models.hf.features import FEATURE_DEFAULTS
from teminal.models.registry import ParsedSpec
from teminal.models.tensor_files import load_tensors, needs_full_pickle

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
HOWTO = ("on a machine with internet: `hf download laion/clap-htsat-unfused --local-dir DIR` "
         "(or ClapModel.from_pretrained(id).save_pretrained(DIR) and ClapProcessor.from_pretrained"
         "(id).save_pretrained(DIR)), copy DIR here, then pass --model hf:DIR")


def _tokenizer_files_present(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or all(
        (folder / f).is_file() for f in ("vocab.json", "merges.txt"))


def _missing(folder: Path, text_dir: Path | None) -> list[MissingFile]:
    missing = []
    if not (folder / CONFIG_FILE).is_file():
        missing.append(MissingFile("transformers ClapModel config", str(folder / CONFIG_FILE),
                                   HOWTO))
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append(MissingFile("transformers ClapModel weights",
                                   str(folder / WEIGHT_FILES[0]), HOWTO))
    tok = text_dir or folder
    if not _tokenizer_files_present(tok):
        missing.append(MissingFile("CLAP tokenizer (tokenizer.json, or vocab.json + merges.txt)",
                                   str(tok), HOWTO + " (or pass hf:DIR?text=TOKENIZER_DIR)"))
    return missing


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer, RobertaTokenizer

    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return RobertaTokenizer.from_pretrained(str(folder), local_files_only=True)


def _read_features(folder: Path) -> dict:
    """The feature extractor's settings: preprocessor_config.json (transformers 4.x layout),
    else the "feature_extractor" entry of processor_config.json (5.x), else CLAP's defaults."""
    path = folder / PREPROCESSOR_FILE
    if path.is_file():
        return json.loads(path.read_text())
    path = folder / PROCESSOR_FILE
    if path.is_file():
        entry = json.loads(path.read_text()).get("feature_extractor")
        if isinstance(entry, dict):
            return entry
    log.warning("%s has no feature extractor settings (%s or %s): using ClapFeatureExtractor's "
                "defaults (48 kHz, 10 s, 64 mel bins)", folder, PREPROCESSOR_FILE, PROCESSOR_FILE)
    return dict(FEATURE_DEFAULTS)


def load_folder(folder: Path, text_dir: Path | None, config: dict, spec: str) -> HfClapModel:
    missing = _missing(folder, text_dir)
    if missing:
        raise ModelFilesNotFound(spec, missing)
    from transformers import ClapConfig, ClapModel as TransformersClap

    hf_config = ClapConfig.from_pretrained(str(folder), local_files_only=True)
    refuse_fusion(hf_config, spec)
    weights = next(folder / w for w in WEIGHT_FILES if (folder / w).is_file())
    # safetensors is read first when present; a pickle file only with tensors (or trusted)
    source, trusted = str(folder), {}
    if weights.suffix == ".bin" and needs_full_pickle(weights):
        # transformers 5.24 reads .bin files with weights_only=True whatever it is told
        state = load_tensors(weights)
        source, trusted = None, {"config": hf_config, "state_dict": {
            k: v for k, v in state.items() if isinstance(v, torch.Tensor)}}
    try:
        with _quiet_progress():  # a bar for reading a local file is noise in every log
            hf = TransformersClap.from_pretrained(source, local_files_only=True, **trusted)
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as e:
        raise ModelSpecError(f"{spec}: cannot load the ClapModel in {folder}: "
                             f"{' '.join(str(e).split())[:300]}") from None
    config = {**config, "source": spec, "weights": str(weights.resolve()),
              "name": config.get("name") or f"hf-{folder.name}"}
    model = HfClapModel(hf, _load_tokenizer(text_dir or folder), _read_features(folder), config)
    log.info("loaded hf CLAP (%.1f M parameters) from %s",
             sum(p.numel() for p in hf.parameters()) / 1e6, folder)
    return model


@contextlib.contextmanager
def _quiet_progress():
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load(parsed: ParsedSpec) -> HfClapModel:
    """hf:DIR (or a plain save_pretrained folder passed as a path)."""
    text = parsed.options.get("text")
    return load_folder(parsed.path, Path(text).expanduser() if text else None,
                       {"extra": {}}, parsed.spec)


def load_checkpoint(parsed: ParsedSpec) -> HfClapModel:
    """A project checkpoint folder of family hf (written by HfClapModel.save), its order-aware
    head included."""
    saved = dict(parsed.checkpoint)
    folder = parsed.path / saved.get("hf_dir", HF_SUBDIR)
    keep = {k: saved[k] for k in ("name", "trainable", "audio", "extra", "audio_head", "seed")
            if k in saved}
    head_file = parsed.path / HEAD_FILE
    if keep.get("audio_head") and not head_file.is_file():
        raise ModelFilesNotFound(str(parsed.path), [MissingFile(
            "order-aware audio head weights", str(head_file),
            "written by HfClapModel.save beside hf/; copy the whole checkpoint folder")])
    model = load_folder(folder, None, keep, str(parsed.path))
    head = read_safetensors(head_file) if head_file.is_file() else {}
    model.load_head_weights(head, str(head_file if head else parsed.path / CONFIG_FILE))
    return model
