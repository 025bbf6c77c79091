"""A rich console that keeps wide tables whole when output is not a terminal.

rich falls back to 80 columns when stdout is a pipe or a file (logs, CI), which cuts
knoblab's summary and benchmark tables; this console uses ``piped_width`` there.

Example:
    >>> from knoblab.console import console
    >>> console(160).print(table)  # doctest: +SKIP
"""

from __future__ import annotations

from rich.console import Console


def console(piped_width: int = 120) -> Console:
    """A rich ``Console``: the terminal's width, or ``piped_width`` columns off a terminal."""
    c = Console()
    return c if c.is_terminal else Console(width=piped_width)
