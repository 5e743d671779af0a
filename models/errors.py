"""Errors of teminal.models that users see: they say what is missing and how to get it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MissingFile:
    """One file a model spec needs: where it was looked for and how to obtain it."""

    what: str     # e.g. "LAION-CLAP checkpoint"
    path: str     # where it was expected
    how: str      # how to get it

    def describe(self) -> str:
        return f"- {self.what}: {self.path}\n    {self.how}"


class ModelFilesNotFound(FileNotFoundError):
    """Raised when a model spec names files that are absent; lists every missing file at once."""

    def __init__(self, spec: str, missing: list[MissingFile]):
        self.spec = spec
        self.missing = list(missing)
        lines = "\n".join(m.describe() for m in self.missing)
        super().__init__(f"model {spec!r} needs {len(self.missing)} missing file(s):\n{lines}")


class ModelSpecError(ValueError):
    """A model spec or checkpoint that cannot be understood (wrong syntax, unsupported
    architecture, mismatched weights)."""
