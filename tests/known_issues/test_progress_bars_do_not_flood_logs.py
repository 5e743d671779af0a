"""Known issue: progress bars written to a file or pipe (CI logs, `make demo | tee`) redrew many
times a second, each redraw another line of log. Off a terminal a bar now refreshes at most
every LOG_INTERVAL_S seconds; on a terminal it behaves as before."""
from __future__ import annotations

import io

from teminal.pipeline import progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _redraws(stream, monkeypatch, seconds: float, updates: int) -> int:
    clock = iter([i * seconds / updates for i in range(updates * 4 + 10)])
    now = [0.0]

    def fake_time():
        now[0] = next(clock, now[0])
        return now[0]

    monkeypatch.setattr("tqdm.std.time", fake_time)  # tqdm's own clock
    bar = progress.progress_bar(updates, "test", "step", file=stream)
    for i in range(updates):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")  # as the trainer does every step
        bar.set_postfix_str(f"{i} members/s")       # as the build does every shard
    bar.close()
    return stream.getvalue().count("\r") + stream.getvalue().count("\n")


def test_off_a_terminal_a_bar_writes_a_line_every_few_seconds_at_most(monkeypatch):
    log = io.StringIO()
    redraws = _redraws(log, monkeypatch, seconds=30.0, updates=3000)  # 100 updates a second
    # 30 s of work: at most one redraw per LOG_INTERVAL_S, plus the first and the last
    assert redraws <= 30 / progress.LOG_INTERVAL_S + 3, log.getvalue()[:300]
    assert "3000/3000" in log.getvalue()


def test_on_a_terminal_the_bar_still_redraws_often(monkeypatch):
    assert _redraws(FakeTerminal(), monkeypatch, seconds=30.0, updates=3000) > 30
    assert progress.on_terminal(io.StringIO()) is False


def test_a_disabled_bar_writes_nothing():
    log = io.StringIO()
    with progress.progress_bar(10, "quiet", "step", enabled=False, file=log) as bar:
        bar.update(10)
    assert log.getvalue() == ""
