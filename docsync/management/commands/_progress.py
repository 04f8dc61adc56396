"""A plain-text progress bar for management commands."""

from __future__ import annotations

from django.core.management.base import OutputWrapper


class ProgressBar:
    """``[#####     ] 5/10``, redrawn in place on a terminal.

    Elsewhere (logs, CI) a line is written only when the bar grows, so a
    long run prints at most ``width`` lines.
    """

    def __init__(self, stream: OutputWrapper, total: int, width: int = 30) -> None:
        self.stream = stream
        self.total = total
        self.width = width
        self.interactive = stream.isatty() if hasattr(stream, "isatty") else False
        self._drawn = -1

    def update(self, done: int) -> None:
        filled = self.width * done // self.total if self.total else self.width
        if not self.interactive and filled == self._drawn and done != self.total:
            return
        self._drawn = filled
        bar = f"[{'#' * filled}{' ' * (self.width - filled)}] {done}/{self.total}"
        if self.interactive:
            self.stream.write(f"\r{bar}", ending="" if done < self.total else "\n")
        else:
            self.stream.write(bar)
        self.stream.flush()
