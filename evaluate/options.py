"""The choices of the `evaluate` commands' options, where the commands and their --help read
them; importable without torch (the CLI builds its options from them before any model loads)."""
from __future__ import annotations

# ZSTE's caption wordings of task 3 (teminal.evaluate.zste.score_zste)
TEMPLATE_CHOICES = ("paper", "heldout", "all")
# the dataset layouts `evaluate zeroshot` reads (teminal.evaluate.zeroshot.scan_esc50)
ZEROSHOT_DATASETS = ("esc50",)

# ZSTE's timing sweep (`evaluate zste --junctions`): where the second event starts, as fractions
# of the clip; the points the demo and benchmarks/ablate_order.py sweep
SWEEP_JUNCTIONS = (0.2, 0.35, 0.5, 0.65, 0.8)
_JUNCTIONS_FORM = ("give one or more fractions of the clip in (0, 1), comma-separated, for "
                   "example " + ",".join(f"{j:g}" for j in SWEEP_JUNCTIONS))


def parse_junctions(value) -> tuple[float, ...]:
    """`--junctions`: "0.2,0.5,0.8" (or numbers) -> (0.2, 0.5, 0.8), ascending. Empty, not a
    number, outside (0, 1) (NaN included) or given twice: a ValueError naming the option."""
    text = value if isinstance(value, str) else ",".join(map(str, value))
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if not parts:
        raise ValueError(f"--junctions {text!r}: {_JUNCTIONS_FORM}")
    junctions = []
    for part in parts:
        try:
            j = float(part)
        except ValueError:
            raise ValueError(f"--junctions {text!r}: {part!r} is not a number; "
                             f"{_JUNCTIONS_FORM}") from None
        if not 0 < j < 1:
            raise ValueError(f"--junctions {text!r}: {part} is outside (0, 1); {_JUNCTIONS_FORM}")
        if j in junctions:
            raise ValueError(f"--junctions {text!r}: {part} is given twice; {_JUNCTIONS_FORM}")
        junctions.append(j)
    return tuple(sorted(junctions))
