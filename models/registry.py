"""Model families and the one parser of model specs.

    small | NAME | /path/config.json [?text=DIR]
                                               family "small": laion-clap's CLAP from a bundled or
                                               user config, random init from its seed; a config
                                               whose text tower is a Hugging Face encoder
                                               (small-minilm) starts from that encoder's
                                               pretrained weights, from DIR when given
    laion:PATH.pt[?text=DIR]                   family "laion": a released LAION-CLAP checkpoint
    hf:DIR[?text=DIR]                          family "hf": a transformers ClapModel save_pretrained
                                               folder (+ its tokenizer / feature extractor files)
    msclap:PATH.pth?version=2022|2023[&text=DIR]
                                               family "msclap": Microsoft CLAP weights (msclap's
                                               {"model": state_dict} file)
    /path/to/checkpoint_dir                    a project checkpoint folder (written by `save`): its
                                               config.json records the family it reloads as; a run
                                               folder stands for its final/; a plain
                                               save_pretrained ClapModel folder reads as hf:DIR

Names that are not local paths resolve from the local caches, offline (nothing is downloaded):
    hf:ORG/NAME                                a Hugging Face repo id: its snapshot in the hub
                                               cache ($HF_HUB_CACHE), as `hf download ORG/NAME`
                                               leaves it
    laion:630k-audioset-best.pt                a bare file name: laion-clap's package folder (where
                                               its load_ckpt puts downloads), then the hub cache of
                                               lukewys/laion_clap
    msclap:CLAP_weights_2023.pth?version=2023  the hub cache of microsoft/msclap (where msclap's
                                               CLAPWrapper downloads them)
A local file or folder of that name always wins; a miss names the id and the `hf download`
command that fills the cache.

Nothing outside `teminal.models` parses specs: `parse_spec` tells the family, the file behind
the weights (for result files' sha256) and a short label, without loading anything heavy.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs

import torch

from teminal.models.errors import MissingFile, ModelFilesNotFound, ModelSpecError

CONFIG_FILE = "config.json"
FINAL_DIR = "final"


@dataclass(frozen=True)
class Family:
    name: str
    prefix: str | None           # "laion:" ...; None: not written as a prefix spec
    options: tuple[str, ...]     # query options the prefix spec accepts
    syntax: str                  # for error messages
    module: str                  # its package: load(parsed), load_checkpoint(parsed) (imported on first use)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("small", None, ("text",), "small | NAME | /path/config.json [?text=DIR]",
           "teminal.models.laion"),
    Family("laion", "laion:", ("text",), "laion:PATH.pt[?text=DIR]", "teminal.models.laion"),
    Family("hf", "hf:", ("text",), "hf:DIR[?text=DIR]", "teminal.models.hf"),
    Family("msclap", "msclap:", ("version", "text"),
           "msclap:PATH.pth?version=2022|2023[&text=DIR]", "teminal.models.msclap"),
)}


@dataclass(frozen=True)
class ParsedSpec:
    spec: str                    # as given
    family: str
    path: Path | None = None     # the file or folder the spec names (None: bundled config)
    options: dict = field(default_factory=dict)
    checkpoint: dict | None = None   # a project checkpoint folder's config.json
    cached_from: str | None = None   # the hub id or file name `path` was found for in a cache

    @property
    def is_checkpoint(self) -> bool:
        return self.checkpoint is not None


def _syntax() -> str:
    return ", ".join(f.syntax for f in FAMILIES.values()) + ", or a checkpoint folder"


def parse_spec(spec: str) -> ParsedSpec:
    """The family, path and options of a spec (see the module docstring); reads at most a
    checkpoint folder's config.json and the local caches' indexes. Bad syntax raises
    ModelSpecError saying how to fix it; a hub id or file name in no local cache raises
    ModelFilesNotFound naming the `hf download` command that fetches it."""
    spec = str(spec)
    for fam in FAMILIES.values():
        if fam.prefix and spec.startswith(fam.prefix):
            return _parse_prefixed(spec, fam)
    from teminal.models.laion.loading import ALIASES, bundled_configs

    base, _, query = spec.partition("?")
    if base in ALIASES or base in bundled_configs():
        return ParsedSpec(spec, "small", None, _options(spec, query, FAMILIES["small"]))
    if base.endswith(".json") and Path(base).expanduser().is_file():
        return ParsedSpec(spec, "small", Path(base).expanduser(),
                          _options(spec, query, FAMILIES["small"]))
    path = Path(spec).expanduser()
    if path.is_dir():
        return _parse_folder(spec, path)
    from teminal.models.laion.loading import _looks_like_a_path, _missing_path

    if _looks_like_a_path(spec) and not spec.endswith((".pt", ".ckpt", ".pth")):
        raise _missing_path(spec)  # a path that is not a model: say what is there instead
    hint = ""
    if spec.endswith((".pt", ".ckpt")):
        hint = f" (a LAION checkpoint file? pass laion:{spec})"
    elif spec.endswith(".pth"):
        hint = f" (Microsoft CLAP weights? pass msclap:{spec}?version=2022 or 2023)"
    raise ModelSpecError(f"unknown model spec {spec!r}{hint}: use {_syntax()} "
                         f"(bundled configs: {bundled_configs()})")


def _parse_prefixed(spec: str, fam: Family) -> ParsedSpec:
    body = spec[len(fam.prefix):]
    path, _, query = body.partition("?")
    if not path:
        raise ModelSpecError(f"{spec!r} names no checkpoint file or folder: use {fam.syntax}")
    options = _options(spec, query, fam)
    resolved = resolve_cached(spec, fam.name, path)
    cached = path if resolved != Path(path).expanduser() else None
    return ParsedSpec(spec, fam.name, resolved, options, cached_from=cached)


def _options(spec: str, query: str, fam: Family) -> dict:
    """The ?key=value options of a spec, checked against what its family takes."""
    raw = parse_qs(query, keep_blank_values=True) if query else {}
    unknown = sorted(set(raw) - set(fam.options))
    if unknown:
        raise ModelSpecError(f"{spec!r}: unknown option(s) {unknown}; {fam.prefix or fam.name} "
                             f"takes {list(fam.options)} ({fam.syntax})")
    return {k: v[-1] for k, v in raw.items() if v and v[-1]}


# ---------------------------------------------------------------------------------------------
# Hub ids and file names, resolved from the local caches (offline: nothing is downloaded)

# Where each family's own library fetches released weights by name: laion-clap's load_ckpt
# downloads https://huggingface.co/lukewys/laion_clap/resolve/main/<name> into its package
# folder; msclap's CLAPWrapper calls hf_hub_download("microsoft/msclap", <name>).
HUB_WEIGHTS_REPO = {"laion": "lukewys/laion_clap", "msclap": "microsoft/msclap"}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE read at call time, else huggingface_hub's."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_cached(spec: str, family: str, text: str) -> Path:
    """The local path a prefixed spec's PATH names: itself when it exists, else an hf repo id's
    cached snapshot or a released weights file by name from its library's caches."""
    path = Path(text).expanduser()
    if path.exists():
        return path
    if family == "hf" and _is_repo_id(text):
        return _cached_snapshot(spec, text)
    if family in HUB_WEIGHTS_REPO and _is_file_name(text):
        return _cached_weights(spec, family, text)
    return path


def _is_repo_id(text: str) -> bool:
    from huggingface_hub.utils import validate_repo_id

    if text.count("/") != 1 or text.startswith(("/", ".", "~")):
        return False
    try:
        validate_repo_id(text)
    except ValueError:
        return False
    return True


def _is_file_name(text: str) -> bool:
    return "/" not in text and "\\" not in text and not text.startswith("~")


def _cached_snapshot(spec: str, repo: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    try:
        return Path(snapshot_download(repo, local_files_only=True, cache_dir=cache))
    except LocalEntryNotFoundError:
        raise ModelFilesNotFound(spec, [MissingFile(
            f"Hugging Face model {repo}",
            f"no folder {repo} here, and not in the local Hugging Face cache {cache}",
            f"download it once with `hf download {repo}` (then hf:{repo} loads offline), or "
            f"pass hf:DIR with a save_pretrained folder")]) from None


def _cached_weights(spec: str, family: str, name: str) -> Path:
    from huggingface_hub import try_to_load_from_cache

    repo, cache = HUB_WEIGHTS_REPO[family], hub_cache_dir()
    places = [p / name for p in _library_folders(family)]
    for place in places:
        if place.is_file():
            return place
    cached = try_to_load_from_cache(repo, name, cache_dir=cache)
    if isinstance(cached, str):
        return Path(cached)
    looked = ", ".join([str(Path(name).absolute()), *map(str, places), f"{cache} ({repo})"])
    raise ModelFilesNotFound(spec, [MissingFile(
        f"{family} weights {name}", f"not found (looked in: {looked})",
        f"download it once with `hf download {repo} {name}` (then {FAMILIES[family].prefix}"
        f"{name} loads offline), or pass {FAMILIES[family].prefix}/path/to/{name}")])


def _library_folders(family: str) -> list[Path]:
    """Folders a family's own library downloads weights into (found without importing it:
    laion_clap's import reaches for a model hub)."""
    if family != "laion":
        return []
    import importlib.util

    found = importlib.util.find_spec("laion_clap")
    return [Path(p) for p in (found.submodule_search_locations or [])] if found else []


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelSpecError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ModelSpecError(f"{path}: a model config is a JSON object")
    return config


def _parse_folder(spec: str, folder: Path) -> ParsedSpec:
    if not (folder / CONFIG_FILE).is_file() and (folder / FINAL_DIR / CONFIG_FILE).is_file():
        folder = folder / FINAL_DIR  # a training run folder stands for its final export
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelSpecError(f"{folder} has no {CONFIG_FILE}: pass a checkpoint folder written "
                             f"by a training run (RUN_DIR or RUN_DIR/final), or use {_syntax()}")
    config = _read_config(cfg_path)
    if config.get("model_type") == "clap":  # transformers' own save_pretrained folder
        return ParsedSpec(spec, "hf", folder)
    family = config.get("family") or legacy_family(config)
    if family not in FAMILIES:
        raise ModelSpecError(f"{cfg_path} records family {family!r}; known: {sorted(FAMILIES)}")
    return ParsedSpec(spec, family, folder, checkpoint=config)


def legacy_family(config: dict) -> str:
    """The family of a project checkpoint saved before config.json recorded one: "laion" when
    it was loaded from a LAION checkpoint (the loader records `checkpoint`) or trained from one
    (its recorded init is a laion: spec), else "small"."""
    if config.get("checkpoint"):
        return "laion"
    extra = config.get("extra") if isinstance(config.get("extra"), dict) else config
    init = extra.get("init")
    return "laion" if isinstance(init, str) and init.startswith("laion:") else "small"


def family_of(spec: str) -> str:
    return parse_spec(spec).family


def weights_file(spec: str) -> Path | None:
    """The file the spec's weights come from (None: random init, or absent)."""
    p = parse_spec(spec)
    if p.path is None or p.family == "small" and not p.is_checkpoint:
        return None
    if p.path.is_file():
        return p.path
    for name in ("model.safetensors", "hf/model.safetensors", "pytorch_model.bin"):
        if (p.path / name).is_file():
            return p.path / name
    return None


def spec_label(spec: str) -> str:
    """A short name for comparisons: the checkpoint file's stem, or the run folder's name."""
    try:
        p = parse_spec(spec)
    except (ModelSpecError, ModelFilesNotFound):
        return Path(str(spec).partition("?")[0]).name or str(spec)
    if p.path is None:
        return spec
    if p.cached_from:  # the name the user gave, not the cache's snapshot hash
        return Path(p.cached_from).stem if p.path.is_file() else Path(p.cached_from).name
    if p.path.is_file() or p.path.suffix in (".pt", ".pth", ".ckpt", ".json"):
        return p.path.stem
    path = p.path
    if path.name in (FINAL_DIR, "best", "hf") and path.parent.name:
        path = path.parent
    if path.name in (FINAL_DIR, "best") and path.parent.name:
        path = path.parent
    return path.name or spec


def checkpoint_folder(spec) -> Path | None:
    """The project checkpoint folder a spec names (a run folder: its final/), else None."""
    try:
        p = parse_spec(str(spec))
    except ModelSpecError:
        return None
    return p.path if p.is_checkpoint else None


def _loader(family: str) -> Callable:
    import importlib

    return importlib.import_module(FAMILIES[family].module)


def load_model(spec: str, device: str | torch.device = "cpu"):
    """Build the model a spec names (see the module docstring) on `device`, in eval mode. Weights
    holding NaN or inf are refused (ModelSpecError naming the file and the tensor)."""
    parsed = parse_spec(spec)
    module = _loader(parsed.family)
    if parsed.is_checkpoint:
        model = module.load_checkpoint(parsed)
    else:
        model = module.load(parsed)
    refuse_non_finite(model, str(weights_file(spec) or spec))
    return model.to(device).eval()


def non_finite_tensor(named_tensors) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, else None."""
    for name, tensor in named_tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


# The adapters hold their family's own module under these attributes (ClapModel and
# MsClapModel: `clap`, HfClapModel: `hf`); weight files name tensors without them.
WRAPPER_PREFIXES = ("clap.", "hf.")


def refuse_non_finite(model: torch.nn.Module, source: str) -> None:
    """A model whose saved weights hold NaN/inf scores nothing and trains nothing: refuse it."""
    name = non_finite_tensor(model.state_dict().items())
    if name is not None:
        name = name.split(".", 1)[1] if name.startswith(WRAPPER_PREFIXES) else name
        raise ModelSpecError(
            f"{source}: weight {name} holds NaN or inf values; this checkpoint is unusable "
            f"(a diverged training run?): use an earlier checkpoint, or retrain with a lower "
            f"--lr")
