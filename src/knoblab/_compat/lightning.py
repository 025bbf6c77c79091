"""Lightning privates and undocumented behaviours knoblab relies on (see ``knoblab._compat``).

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

__all__ = [
    "CLOUD_TIP_PREFIX",
    "attached_trainer",
    "INTERRUPT_PREFIX",
    "fit_interrupt_as_keyboard_interrupt",
    "quiet_cloud_tip",
    "rank_zero_logger",
    "set_batch_limit",
    "uses_distributed_sampler",
]

#: How the line Lightning logs at every ``Trainer`` start, advertising its cloud logger, begins.
CLOUD_TIP_PREFIX = "\N{ELECTRIC LIGHT BULB} Tip:"
#: How the line Lightning logs when ``Trainer.fit`` catches a Ctrl-C begins.
INTERRUPT_PREFIX = "Detected KeyboardInterrupt"


def uses_distributed_sampler(trainer: Any) -> bool:
    """The Trainer's ``use_distributed_sampler`` flag.

    Why: Lightning keeps the constructor argument only on the private
    ``trainer._accelerator_connector``; a data module that shards itself must refuse a
    Trainer that would also shard its loader.
    """
    connector = getattr(trainer, "_accelerator_connector", None)
    if connector is None or not hasattr(connector, "use_distributed_sampler"):
        raise RuntimeError(
            "lightning.Trainer no longer has _accelerator_connector.use_distributed_sampler: "
            "update knoblab._compat.lightning.uses_distributed_sampler"
        )
    return bool(connector.use_distributed_sampler)


def attached_trainer(module: Any) -> Any:
    """The ``Trainer`` a ``LightningModule`` is attached to, or None before ``fit``.

    Why: ``module.trainer`` raises when no Trainer is attached; the value behind it is
    the private ``module._trainer``. A module's own hooks (``total_steps`` called by hand,
    ``on_train_start``) need "no Trainer" as a plain answer.
    """
    if "_trainer" not in vars(module):
        raise RuntimeError(
            "lightning.LightningModule no longer keeps _trainer: "
            "update knoblab._compat.lightning.attached_trainer"
        )
    return module._trainer


def set_batch_limit(trainer: Any, attr: str, value: int | float) -> None:
    """Overwrite ``trainer.limit_train_batches`` / ``trainer.limit_val_batches`` after init.

    Why: chunked loading must make Lightning ignore a user's ``limit_*`` (seed 001: chunk
    sizes take precedence). Lightning has no setter; its loops read these attributes
    when they set up their data (after ``*_dataloader()`` is called), so a write from
    the data module takes effect for that epoch.
    """
    if attr not in ("limit_train_batches", "limit_val_batches"):
        raise ValueError(f"attr={attr!r}: allowed is limit_train_batches or limit_val_batches")
    if not hasattr(trainer, attr):
        raise RuntimeError(
            f"lightning.Trainer no longer has {attr}: update knoblab._compat.lightning.set_batch_limit"
        )
    setattr(trainer, attr, value)


class _NoCloudTip(logging.Filter):
    """Drops the line Lightning logs at every Trainer start advertising its cloud logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        # and its Ctrl-C line: the knoblab CLI says "interrupted; finished results are kept"
        return not str(record.msg).strip().startswith((CLOUD_TIP_PREFIX, INTERRUPT_PREFIX))


def quiet_cloud_tip() -> None:
    """Filter Lightning's "💡 Tip: ..." line out of its rank-zero logger (idempotent).

    Why: knoblab trains offline and picks its own loggers; Lightning has no switch for
    the line, which it logs at INFO through ``lightning_utilities``' rank-zero logger.
    The filter matches the line's text, so a reworded tip passes through (harmless; the
    test in tests/_compat says so).
    """
    target = rank_zero_logger()
    if not any(isinstance(f, _NoCloudTip) for f in target.filters):
        target.addFilter(_NoCloudTip())


@contextlib.contextmanager
def fit_interrupt_as_keyboard_interrupt(trainer: Any) -> Iterator[None]:
    """Around ``trainer.fit``: Lightning's ``sys.exit(1)`` after Ctrl-C becomes ``KeyboardInterrupt``.

    Usage::

        with fit_interrupt_as_keyboard_interrupt(trainer):
            trainer.fit(module)
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
