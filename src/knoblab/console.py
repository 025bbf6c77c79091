"""A rich console that keeps wide tables whole when output is not a terminal.

rich falls back to 80 columns when stdout is a pipe or a file (logs, CI), which cuts
knoblab's summary and benchmark tables; this console uses ``piped_width`` there.

Example:
    >>> from rich.table import Table
    >>> from knoblab.console import console
    >>> table = Table("configuration", "T_total_p95 (ms)")
    >>> table.add_row("shapes-vqa_imgsizetier-high_topk2_blocks4", "12.5")
    >>> console(160).print(table)  # doctest: +ELLIPSIS
    ┏━━━...━━━┓
    ...shapes-vqa_imgsizetier-high_topk2_blocks4...12.5...
    ...
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def console(piped_width: int = 120) -> Console:
    """A rich ``Console``: the terminal's width, or ``piped_width`` columns off a terminal."""
    from rich.console import Console  # here, so importing knoblab does not import rich

    c = Console()
    return c if c.is_terminal else Console(width=piped_width)


def progress_bar(enabled: bool, console: Any, *, auto_refresh: bool = True) -> Any:
    """knoblab's rich progress bar: description, bar, done/total, elapsed and ETA.

    With ``auto_refresh`` a rendering thread redraws it twice a second (it must not steal
    the cores a sweep times); without, the caller calls ``refresh()`` (the deep profiler
    records every thread's Python calls, so a render thread would land in its traces).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        auto_refresh=auto_refresh,
        refresh_per_second=2,
        transient=False,
    )


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a captured or replaced stream too)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_to_stderr() -> None:
    """Show knoblab's INFO lines (heartbeats, curriculum, chunks) on stderr; once per process.

    NOTE: the handler follows ``sys.stderr`` rather than holding the stream it saw first,
    so a process that swaps it (pytest's capture, a notebook) never writes to a closed one.
    """
    logger = logging.getLogger("knoblab")
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
