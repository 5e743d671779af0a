"""Family "msclap": Microsoft CLAP from a local weights file, or a project checkpoint folder
written by `MsClapModel.save`, fully offline.

    msclap:PATH.pth?version=2022|2023[&text=DIR]
        PATH: msclap's weights file (a dict with the state dict under "model", e.g.
        CLAP_weights_2022.pth); DIR: the text tokenizer's files (2022: BERT's vocab.txt of
        bert-base-uncased; 2023: GPT-2's vocab.json + merges.txt), else a Hugging Face cache
        that holds them. The architecture is read from the file's tensors; weights load strictly.
"""
from __future__ import annotations

import logging

from teminal.models.adapter import WEIGHTS_FILE, read_safetensors
from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError
from teminal.models.msclap.adapter import TOKENIZER_SUBDIR, MsClapModel
from teminal.models.msclap.checkpoint import (WEIGHTS_HOWTO, htsat_sizes_for, read_state,
                                              text_config_for)
from teminal.models.msclap.library import HTSAT_DEFAULT, VERSIONS
from teminal.models.msclap.tokenizer import (TOKENIZER_FILES, MsClapTokenizer,
                                             find_tokenizer_dir)
from teminal.models.registry import ParsedSpec

log = logging.getLogger(__name__)


def load(parsed: ParsedSpec) -> MsClapModel:
    spec, path = parsed.spec, parsed.path
    version = parsed.options.get("version")
    if version not in VERSIONS:
        raise ModelSpecError(f"{spec!r}: say which Microsoft CLAP it is with ?version=2022 "
                             f"(CNN14 + BERT) or ?version=2023 (HTSAT + GPT-2), got {version!r}")
    missing = [] if path.is_file() else [MissingFile(
        f"Microsoft CLAP {version} weights", str(path), WEIGHTS_HOWTO.format(version=version))]
    tok_dir, tok_missing = find_tokenizer_dir(parsed.options.get("text"), version)
    if missing or tok_missing:  # every missing file at once
        raise ModelFilesNotFound(spec, missing + tok_missing)
    state = read_state(path)
    config = {"name": f"msclap-{version}", "version": version, "source": spec,
              "weights": str(path.resolve()), "extra": {},
              "text": {"config": text_config_for(state, version, str(path))}}
    if version == "2023":
        sizes = htsat_sizes_for(state, str(path))
        if sizes != HTSAT_DEFAULT:
            config["audio_sizes"] = sizes
            log.warning("%s: HTSAT sizes %s differ from msclap's released model %s", path,
                        sizes, HTSAT_DEFAULT)
    model = MsClapModel(config, MsClapTokenizer(tok_dir, version))
    model.load_weights(state, str(path))
    model.config["text"]["dir"] = str(tok_dir.resolve())
    log.info("loaded Microsoft CLAP %s (%.1f M parameters) from %s", version,
             sum(p.numel() for p in model.parameters()) / 1e6, path)
    return model


def load_checkpoint(parsed: ParsedSpec) -> MsClapModel:
    """A project checkpoint folder of family msclap (written by MsClapModel.save)."""
    folder, config = parsed.path, dict(parsed.checkpoint)
    version = config.get("version")
    if version not in VERSIONS:
        raise ModelSpecError(f"{folder}/config.json: family msclap without a known version")
    text_dir = folder / config.get("text", {}).get("dir", TOKENIZER_SUBDIR)
    missing = [MissingFile("msclap checkpoint file", str(folder / f),
                           "written by MsClapModel.save / the trainer's final/ export")
               for f in (WEIGHTS_FILE,) if not (folder / f).is_file()]
    missing += [MissingFile(f"msclap {version} tokenizer file", str(text_dir / f),
                            "saved with the checkpoint; copy the whole folder")
                for f in TOKENIZER_FILES[version] if not (text_dir / f).is_file()]
    if missing:
        raise ModelFilesNotFound(str(folder), missing)
    weights = read_safetensors(folder / WEIGHTS_FILE)  # before building: fails fast
    config.update(source=str(folder), weights=str((folder / WEIGHTS_FILE).resolve()))
    model = MsClapModel(config, MsClapTokenizer(text_dir, version))
    model.load_weights(weights, str(folder / WEIGHTS_FILE))
    model.config["text"]["dir"] = str(text_dir.resolve())
    return model
