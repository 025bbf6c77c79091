"""torch privates knoblab relies on (see ``knoblab._compat``)."""

from __future__ import annotations

from typing import Any

__all__ = ["set_last_lr", "shutdown_workers"]


def shutdown_workers(iterator: Any) -> None:
    """Stop the worker processes of a ``DataLoader`` iterator now (no-op without workers).

    Why: a chunk of a chunked loader is never iterated to its StopIteration (Lightning
    stops at ``len()``), so its workers would live until the garbage collector freed the
    iterator, and freed from a reference cycle torch waits its 5 s join timeout per
    worker. ``_MultiProcessingDataLoaderIter._shutdown_workers`` is torch's own teardown
    (Lightning stops its loaders' workers the same way); it is idempotent.
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)  # None: no workers, or no iterator
    if shutdown is not None:
        shutdown()


def set_last_lr(scheduler: Any, lrs: list[float]) -> None:
    """Make ``scheduler.get_last_lr()`` return ``lrs`` after its LRs were set by hand.

    Why: ``LRScheduler`` keeps the value ``get_last_lr()`` returns in the private
    ``_last_lr``, written only by ``step()``; a resumed run that rescales the schedule
    (``train.optim.max_steps``) sets the param groups' LRs directly and must update it too,
    or LR monitors log the stale value until the next step.
    """
    if not hasattr(scheduler, "_last_lr"):
        raise RuntimeError(
            "torch LRScheduler no longer has _last_lr: update knoblab._compat.torch.set_last_lr"
        )
    scheduler._last_lr = list(lrs)
