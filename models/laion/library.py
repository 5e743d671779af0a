"""The one place that imports laion_clap, without its network side effects.

`import laion_clap` runs the package's `__init__`, which imports `hook.py` and then
`training/data.py`, which calls `BertTokenizer/RobertaTokenizer/BartTokenizer.from_pretrained`
at import time: offline, transformers 4.x raises and 5.x quietly returns a broken 5-token
tokenizer (docs/STACK-NOTES.md, "laion-clap imports"). The model code we need lives in `laion_clap.clap_module`, which needs
no network. So we register bare parent packages (their `__path__` only, no `__init__` run) for
`laion_clap` and `laion_clap.clap_module`, and import only the modules we use (model,
tokenizer; factory for its bundled configs).

`CLAP.__init__` also calls `RobertaModel.from_pretrained('roberta-base')` for a RoBERTa text
tower; `build_clap` swaps that call for a model built from a config dict (weights come from the
checkpoint afterwards), so nothing is read from a model hub.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import os

import torch

from teminal.models.bare_import import register_bare_package

# Defaults only: a user who really wants the hub can still set these to 0 before importing us.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", "/tmp")  # laion's pann_model sets it; keep it harmless

_PACKAGE = "laion_clap"


def _register_bare_package() -> None:
    """A `laion_clap` package object whose `__init__` never runs (see teminal.models.bare_import)."""
    register_bare_package(_PACKAGE, "pip install laion-clap==1.1.7 (see pyproject.toml / "
                                    "constraints.txt)")


def _submodule(name: str):
    """`laion_clap.clap_module.<name>`, with both parents registered bare first: laion_clap's own
    `__init__` reaches for a hub, and clap_module's imports every module of the package (its
    loss.py pulls in scikit-learn, factory.py the training helpers): seconds of start-up in
    every process that only needs the model code or the tokenizer."""
    _register_bare_package()
    register_bare_package(f"{_PACKAGE}.clap_module", "pip install laion-clap==1.1.7")
    return importlib.import_module(f"{_PACKAGE}.clap_module.{name}")


def bpe_tokenizer():
    """laion-clap's bundled CLIP BPE tokenizer (vocabulary ships inside the package)."""
    return _submodule("tokenizer")._tokenizer


def laion_model_config(name: str) -> dict:
    """A copy of one of laion-clap's bundled architecture configs (e.g. 'HTSAT-tiny')."""
    factory = _submodule("factory")
    if name not in factory._MODEL_CONFIGS:
        raise KeyError(f"laion-clap has no model config {name!r}; it has "
                       f"{sorted(factory._MODEL_CONFIGS)}")
    return copy.deepcopy(factory._MODEL_CONFIGS[name])


@contextlib.contextmanager
def _roberta_from_config(hf_config: dict | None):
    """Within the block, laion's `RobertaModel.from_pretrained(...)` builds a randomly initialised
    RobertaModel from `hf_config` instead of downloading roberta-base."""
    model_module = _submodule("model")
    original = model_module.RobertaModel

    class _FromConfig:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            if hf_config is None:
                raise RuntimeError("a RoBERTa text tower needs its config (no hub access here)")
            from transformers import RobertaConfig

            return original(RobertaConfig(**hf_config))

    model_module.RobertaModel = _FromConfig
    try:
        yield
    finally:
        model_module.RobertaModel = original


def build_clap(clap_config: dict, roberta_config: dict | None = None,
               text_module: torch.nn.Module | None = None,
               pooled_width: int | None = None) -> torch.nn.Module:
    """laion-clap's `CLAP` from a config dict (the keyword arguments of `CLAP.__init__`:
    embed_dim, audio_cfg, text_cfg, joint_embed_shape, ...). Random init, no network.
    A text tower of model_type 'roberta' is built from `roberta_config` (a transformers
    RobertaConfig dict); one of model_type 'bert' is `text_module`, an already built
    transformers encoder (BERT- or RoBERTa-like, any width: the text projection is sized to
    `pooled_width`, the width of its pooled text, default its hidden size); 'bart' is not
    supported offline."""
    model_module = _submodule("model")
    text_type = clap_config["text_cfg"].get("model_type")
    if text_type == "bart" or (text_type == "bert" and text_module is None):
        raise ValueError(f"text tower {text_type!r} needs hub files; teminal.models supports "
                         "'transformer' (bundled BPE), 'roberta' (local tokenizer files) and "
                         "'bert' with a local encoder folder (config text.encoder = 'hf')")
    cfg = copy.deepcopy(clap_config)
    with _roberta_from_config(roberta_config), _bert_module(text_module):
        clap = model_module.CLAP(**cfg)
    if text_module is not None:
        _fit_text_projection(clap, pooled_width or text_module.config.hidden_size)
    return clap


@contextlib.contextmanager
def _bert_module(module: torch.nn.Module | None):
    """Within the block, laion's `BertModel.from_pretrained(...)` returns `module`."""
    model_module = _submodule("model")
    original = model_module.BertModel

    class _Given:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            return module

    model_module.BertModel = _Given
    try:
        yield
    finally:
        model_module.BertModel = original


def _fit_text_projection(clap: torch.nn.Module, width: int) -> None:
    """laion sizes a BERT tower's projection for width 768; any other width gets the same MLP
    (Linear, laion's activation, Linear) over its own width."""
    first, act, last = clap.text_projection
    if first.in_features != width:
        clap.text_projection = torch.nn.Sequential(
            torch.nn.Linear(width, first.out_features), act,
            torch.nn.Linear(last.in_features, last.out_features))
