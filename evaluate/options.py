"""The choices of the `evaluate` commands' options, where the commands and their --help read
them; importable without torch (the CLI builds its options from them before any model loads)."""
from __future__ import annotations

# ZSTE's caption wordings of task 3 (teminal.evaluate.zste.score_zste)
TEMPLATE_CHOICES = ("paper", "heldout", "all")
# the dataset layouts `evaluate zeroshot` reads (teminal.evaluate.zeroshot.scan_esc50)
ZEROSHOT_DATASETS = ("esc50",)
