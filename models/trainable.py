"""Which parameters train: name patterns, and the front end that never does.

A pattern is a shell-style glob over parameter names (`fnmatch`, e.g. `audio_branch.conv_block4.*`)
or, prefixed with `re:`, a regular expression that must match the whole name
(`re:text_branch\\.encoder\\.layer\\.(10|11)\\..*`). The STFT and mel filter bank of the audio
front end stay frozen whatever the patterns say: training them cost single-sound accuracy
(FIELD-NOTES), and they are fixed signal processing, not learned features.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Iterable

FRONT_END = ("audio_branch.spectrogram_extractor.*", "audio_branch.logmel_extractor.*")


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
