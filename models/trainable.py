"""Which parameters train: name patterns, and the front end that never does.

A pattern is a shell-style glob over parameter names (`fnmatch`, e.g. `audio_branch.conv_block4.*`)
or, prefixed with `re:`, a regular expression that must match the whole name
(`re:text_branch\\.encoder\\.layer\\.(10|11)\\..*`). The STFT and mel filter bank of the audio
front end stay frozen whatever the patterns say: training them cost single-sound accuracy
(docs/STACK-NOTES.md), and they are fixed signal processing, not learned features.

The word `default` in a list of patterns stands for the model's own default subset, so a subset
can be widened without spelling it out: `--trainable default 'text_branch.resblocks.0.*'`.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Iterable

# laion's audio_branch.*, msclap's audio_encoder.base(.htsat).*: torchlibrosa's STFT and mel
FRONT_END = ("*spectrogram_extractor.*", "*logmel_extractor.*")


def _matcher(pattern: str):
    if pattern.startswith("re:"):
        rx = re.compile(pattern[3:])
        return lambda name: rx.fullmatch(name) is not None
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def is_front_end(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in FRONT_END)


def select(names: Iterable[str], patterns: Iterable[str]) -> tuple[set[str], list[str]]:
    """(names matched by any pattern minus the front end, patterns that matched no name)."""
    names = list(names)
    chosen: set[str] = set()
    unused: list[str] = []
    for pattern in patterns:
        match = _matcher(pattern)
        hits = {n for n in names if match(n)}
        if not hits:
            unused.append(pattern)
        chosen |= hits
    return {n for n in chosen if not is_front_end(n)}, unused


DEFAULT = "default"


def resolve(patterns: list[str] | str | None, default: list[str]) -> list[str]:
    """The patterns to apply: None -> `default`; the word "default" in the list -> `default`'s
    patterns in its place (duplicates dropped, order kept)."""
    if patterns is None:
        return list(default)
    if isinstance(patterns, str):
        patterns = [patterns]
    out: list[str] = []
    for p in patterns:
        for q in (default if p == DEFAULT else [p]):
            if q not in out:
                out.append(q)
    return out


def apply_named(named: dict, patterns: list[str] | str, what: str,
                listing: str = "named_parameters()") -> tuple[int, int]:
    """Set requires_grad on the parameters in `named` (name -> parameter, under the names a
    model saves them by): those matched by `patterns` train, the rest freeze (the caller then
    freezes its batch norms). A pattern that matches nothing is an error naming `what` (the
    model), a few real names and `listing`, where to see them all. Returns (n_trainable,
    n_total) in scalars."""
    import logging

    if isinstance(patterns, str):
        patterns = [patterns]
    chosen, unused = select(named, patterns)
    if unused:
        raise ValueError(f"trainable pattern(s) {unused} match no parameter of model {what}; "
                         f"names look like {sorted(named)[:3]} ... (see {listing})")
    for name, p in named.items():
        p.requires_grad_(name in chosen)
    n_total = sum(p.numel() for p in named.values())
    n_train = sum(named[n].numel() for n in chosen)
    logging.getLogger(__name__).info(
        "training %d of %d parameters (%.1f%%) in %d tensors: %s", n_train, n_total,
        100.0 * n_train / max(n_total, 1), len(chosen), list(patterns))
    return n_train, n_total


MAX_LR_FACTOR = 1000  # beyond, lr x factor only overflows the weights


def parse_multiplier(text: str) -> tuple[str, float]:
    """`PATTERN=FACTOR` (e.g. `text_branch.*=0.3`) -> (pattern, factor); the factor a finite
    number from 0 to MAX_LR_FACTOR."""
    pattern, sep, factor = str(text).rpartition("=")
    try:
        value = float(factor)
    except ValueError:
        value = None
    if not sep or not pattern or value is None or not (0 <= value <= MAX_LR_FACTOR):
        raise ValueError(f"{text!r} is not PATTERN=FACTOR with a finite FACTOR >= 0 and <= "
                         f"{MAX_LR_FACTOR} (for example 'text_branch.*=0.3')")
    return pattern, value


def multiplier_of(name: str, rules: list[tuple[str, float]]) -> float:
    """The factor of the first rule whose pattern matches `name` (same patterns as
    --trainable); 1.0 when none does."""
    for pattern, factor in rules:
        if _matcher(pattern)(name):
            return factor
    return 1.0


def weight_names(model) -> dict[int, str]:
    """id(parameter) -> the name `--trainable` patterns see: the adapter's `named_weights()`
    (the library's own names, and `audio_head.*` for the head)."""
    return {id(p): n for n, p in model.named_weights().items()}


def freeze_frozen_norms(module) -> None:
    """A frozen part runs as at inference, in training mode too: a batch-norm layer whose
    weights are frozen keeps its running statistics (otherwise a frozen block would still drift
    with every training batch), and a module none of whose parameters train (a frozen audio
    branch) runs in eval mode, so its dropout does not add fresh noise to the features the
    trained layers above it read (laion's Cnn6 drops half of its pooled features before fc1)."""
    from torch import nn

    if not module.training:
        return
    for m in module.modules():
        params = list(m.parameters())
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or len(params) > 0:
            if params and not any(p.requires_grad for p in params):
                m.eval()
