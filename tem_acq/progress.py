"""Progress of a long command: a bar on a terminal, plain periodic log lines otherwise.

A piped or logged run (a job on a cluster, ``tem-acq train ... | tee log``) gets one line every
``every_s`` seconds and one at the end, so that a 2-minute collection does not print nothing
until it ends; an interactive terminal gets a rich progress bar. Every long command uses this
one class.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

#: Seconds between plain progress lines when the output is not a terminal.
LINE_EVERY_S = 10.0


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Report ``done`` of ``total`` work items while a command runs.

    Parameters
    ----------
    what
        What is being done (``"training"``, ``"collecting pairs"``).
    total
        How many items there are.
    unit
        What an item is, plural (``"steps"``, ``"fields"``, ``"frames"``).
    show
        ``True``: always report; ``False``: never; ``None``: a bar on a terminal, lines
        otherwise (both on ``stream``).
    bar
        ``None``: a bar exactly when ``stream`` is a terminal; ``False`` forces plain lines.
    start
        Items already done before this run (a resumed run): rates count only this run's.
    every_s
        Seconds between plain lines.
    stream
        Where reports go (default stderr).
    """

    def __init__(
        self,
        what: str,
        total: int,
        *,
        unit: str = "",
        show: bool | None = None,
        bar: bool | None = None,
        start: int = 0,
        every_s: float = LINE_EVERY_S,
        stream: IO[str] | None = None,
    ) -> None:
        self.what, self.total, self.unit = what, int(total), unit
        self.stream = sys.stderr if stream is None else stream
        self.show = True if show is None else show
        self.bar = is_terminal(self.stream) if bar is None else bar
        self.start = self.done = int(start)
        self.every_s = every_s
        self.fields: dict[str, str] = {}
        self._t0 = self._last_line = time.perf_counter()
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.show and self.bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn(self.what),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._rich.__enter__()
            self._task = self._rich.add_task(
                self.what, total=self.total, completed=self.done, note=""
            )
        return self

    def update(self, done: int, **fields: Any) -> None:
        """``done`` items are done now; ``fields`` (``loss=0.012``) are shown beside."""
        self.done = int(done)
        self.fields = {k: _text(v) for k, v in fields.items()}
        if not self.show:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, note=self._note())
        elif time.perf_counter() - self._last_line >= self.every_s:
            self._line()

    def advance(self, n: int = 1, **fields: Any) -> None:
        """``n`` more items are done."""
        self.update(self.done + n, **fields)

    def line(self) -> str:
        """The plain progress line as it stands."""
        elapsed = time.perf_counter() - self._t0
        run = self.done - self.start
        rate = run / elapsed if elapsed > 0 else math.nan
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate and rate > 0 else math.nan
        parts = [
            f"{self.what}: {self.done}/{self.total} {self.unit}".rstrip() + f" ({pct:.0f} %)",
            f"{rate:.3g} {self.unit}/s".replace(" /s", "/s") if math.isfinite(rate) else "",
            f"ETA {_duration(eta)}" if math.isfinite(eta) and self.done < self.total else "",
            f"elapsed {_duration(elapsed)}",
            self._note(),
        ]
        return ", ".join(p for p in parts if p)

    def _note(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.fields.items())

    def _line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(None, None, None)
        elif self.show and self.done > self.start:
            self._line()  # where it ended, however soon


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return str(value)


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
