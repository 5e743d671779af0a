"""Progress bars of the build (tqdm, on stderr; `enabled=False` for none)."""
from __future__ import annotations


def progress_bar(total: int, desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                smoothing=0.1)
