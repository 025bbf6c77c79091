"""What knoblab relies on in Lightning beyond its documented API.

* ``fit_interrupt_as_keyboard_interrupt``: Lightning 2.x catches ``KeyboardInterrupt``
  inside ``Trainer.fit``, runs its shutdown, marks the trainer interrupted and calls
  ``sys.exit(1)`` (``lightning.pytorch.trainer.call._call_and_handle_interrupt``). The
  CLI wants the interrupt back (exit 130, one line), so that exit is turned back into
  a ``KeyboardInterrupt``.
* ``rank_zero_logger``: the logger Lightning's ``rank_zero_info`` writes to
  (``lightning_utilities.core.rank_zero.log``), to filter lines knoblab replaces.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def fit_interrupt_as_keyboard_interrupt(trainer: Any) -> Iterator[None]:
    """Around ``trainer.fit``: Lightning's ``sys.exit(1)`` after Ctrl-C becomes ``KeyboardInterrupt``.

    Example:
        >>> with fit_interrupt_as_keyboard_interrupt(trainer):  # doctest: +SKIP
        ...     trainer.fit(module)
    """
    try:
        yield
    except SystemExit:
        if getattr(trainer, "interrupted", False):
            raise KeyboardInterrupt from None
        raise


def rank_zero_logger() -> logging.Logger:
    """The ``logging.Logger`` behind Lightning's ``rank_zero_info`` / ``rank_zero_warn``."""
    from lightning_utilities.core import rank_zero

    return rank_zero.log
