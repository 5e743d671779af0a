"""Issue 26, "Docs and CLI": the code and docs cited a method spec (`METHOD.md`) and field notes
(`FIELD-NOTES`) that live outside the repository. The method is docs/METHOD.md and the stack
facts docs/STACK-NOTES.md; every docs/*.md the project names exists."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".git", "runs", "data", "node_modules", "__pycache__", ".pytest_cache"}
SUFFIXES = {".py", ".md", ".sh", ".json", ".yaml", ".yml", ".toml", ".sbatch", ""}
THIS = Path(__file__).resolve()


def project_texts():
    for folder, dirs, files in os.walk(ROOT):
        # prune: no .venv, no generated egg-info (a copy of the README as of the last install)
        dirs[:] = [d for d in dirs if d not in SKIP and not d.startswith(".")
                   and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if (path.suffix in SUFFIXES and path.resolve() != THIS
                    and path.stat().st_size < 2_000_000):
                yield path.relative_to(ROOT), path.read_text(encoding="utf-8", errors="replace")


def test_nothing_cites_notes_outside_the_repository():
    cited = [f"{rel}:{n}" for rel, text in project_texts()
             for n, line in enumerate(text.splitlines(), 1)
             if "FIELD-NOTES" in line or "shared/docs" in line
             or re.search(r"(?<![\w/])METHOD\.md", line) and rel.parts[0] != "docs"]
    assert cited == [], "cite docs/METHOD.md or docs/STACK-NOTES.md instead: " + ", ".join(cited)


def test_every_docs_file_named_exists():
    named = {m for _, text in project_texts() for m in re.findall(r"docs/[A-Za-z0-9_-]+\.md", text)}
    assert named, "the project names its docs"
    missing = sorted(m for m in named if not (ROOT / m).is_file())
    assert missing == []
    method = (ROOT / "docs" / "METHOD.md").read_text(encoding="utf-8")
    for words in ("## ZSTE", "chance", "## Losses", "METHOD-NOTES.md"):
        assert words in method
