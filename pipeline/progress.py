"""Progress bars for every command (tqdm, on stderr; `enabled=False` for none).

On a terminal a bar redraws as usual. Written to a file or a pipe (CI logs, `make demo | tee`),
every redraw is another line of log, so a bar then refreshes at most every
`LOG_INTERVAL_S` seconds and never adapts its width to a terminal that is not there.
"""
from __future__ import annotations

import sys

LOG_INTERVAL_S = 10.0


def on_terminal(stream=None) -> bool:
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, **kwargs):
    from tqdm import tqdm

    terminal = on_terminal(kwargs.get("file"))
    options = {"dynamic_ncols": True, "smoothing": 0.1} if terminal else \
        {"mininterval": LOG_INTERVAL_S, "maxinterval": max(LOG_INTERVAL_S, 60.0), "ncols": 100}
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, **{**options, **kwargs})
