"""A rich console that keeps wide tables whole when output is not a terminal.

rich falls back to 80 columns when stdout is a pipe or a file (logs, CI), which cuts
knoblab's summary and benchmark tables; this console uses ``piped_width`` there.

Example:
    >>> from knoblab.console import console
    >>> console(160).print(table)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def console(piped_width: int = 120) -> Console:
    """A rich ``Console``: the terminal's width, or ``piped_width`` columns off a terminal."""
    from rich.console import Console  # here, so importing knoblab does not import rich

    c = Console()
    return c if c.is_terminal else Console(width=piped_width)


def log_to_stderr() -> None:
    """Show knoblab's INFO lines (heartbeats, curriculum, chunks) on stderr; once per process."""
    logger = logging.getLogger("knoblab")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
