"""What the user sees: one small object for progress, tables and messages.

Results (tables, rendered templates) go to stdout so they can be piped; progress and messages go
to stderr. rich decides colours from the terminal (and honours NO_COLOR); in CI the same lines
come out plain.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_STATUS_STYLES = (
    ("FAILED", "bold red"),
    ("ROLLBACK", "red"),
    ("DELETE", "yellow"),
    ("COMPLETE", "green"),
    ("IN_PROGRESS", "cyan"),
)


def status_style(status: str) -> str:
    for marker, style in _STATUS_STYLES:
        if marker in status:
            return style
    return ""


class UI:
    def __init__(self, out: Console | None = None, err: Console | None = None) -> None:
        # Piped or in CI there is no terminal width to fit: use a wide one rather than rich's 80.
        width = None if sys.stdout.isatty() else 200
        self.out = out or Console(highlight=False, soft_wrap=True, width=width)
        self.err = err or Console(stderr=True, highlight=False, soft_wrap=True, width=width)
        self._lock = threading.Lock()  # stacks deploy in parallel threads

    # Messages carry text from outside (names, AWS error messages, paths): escaped, so that a
    # "[...]" in them is printed, not read as markup.
    def info(self, message: str) -> None:
        with self._lock:
            self.err.print(escape(message))

    def success(self, message: str) -> None:
        with self._lock:
            self.err.print(f"[green]✓[/green] {escape(message)}")

    def error(self, message: str) -> None:
        with self._lock:
            self.err.print(f"[bold red]Error:[/bold red] {escape(message)}")

    def result(self, text: str) -> None:
        """Plain text for stdout (a rendered template, an export line): no markup, no wrapping."""
        with self._lock:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()

    def table(self, title: str | None, columns: Sequence[str],
              rows: Iterable[Sequence[object]], styles: Sequence[str] | None = None) -> None:
        table = Table(title=title, title_justify="left", show_lines=False)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(cell) if cell is not None else "" for cell in row),
                          style=None)
        with self._lock:
            self.out.print(table)

    def stack_event(self, stack: str, timestamp: datetime, resource: str, resource_type: str,
                    status: str, reason: str | None) -> None:
        """One CloudFormation event line of the live view shown while a stack deploys."""
        style = status_style(status)
        when = timestamp.strftime("%H:%M:%S")
        line = f"  {when} {stack} {resource} ({resource_type}) [{style}]{status}[/]" if style else \
            f"  {when} {stack} {resource} ({resource_type}) {status}"
        if reason:
            line += f" - {escape(reason)}"
        with self._lock:
            self.err.print(line)
