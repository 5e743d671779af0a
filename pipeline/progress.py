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
    if terminal:
        return tqdm(total=total, desc=desc, unit=unit, disable=not enabled,
                    **{"dynamic_ncols": True, "smoothing": 0.1, **kwargs})

    class LogBar(tqdm):
        """A postfix change waits for the next timed redraw instead of forcing one (tqdm's
        set_postfix refreshes by default, which made a line per training step)."""

        def set_postfix(self, ordered_dict=None, refresh=False, **kw):
            super().set_postfix(ordered_dict, refresh=False, **kw)

        def set_postfix_str(self, s="", refresh=False):
            super().set_postfix_str(s, refresh=False)

    return LogBar(total=total, desc=desc, unit=unit, disable=not enabled,
                  **{"mininterval": LOG_INTERVAL_S, "maxinterval": max(LOG_INTERVAL_S, 60.0),
                     "ncols": 100, **kwargs})
