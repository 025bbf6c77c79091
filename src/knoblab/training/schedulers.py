"""Linear warmup then cosine annealing, as a pure function of the optimizer step.

``warmup_cosine_lr(step, ...)`` is the whole schedule; ``LinearWarmupCosineAnnealingLR``
is the ``torch.optim`` scheduler that evaluates it at ``last_epoch`` (which counts
optimizer steps when Lightning steps the scheduler with ``interval="step"``).

The schedule, for base rate ``B``, warmup ``W`` and last step ``M`` (``M > W``)::

    step s <  W : warmup_start_lr + (B - warmup_start_lr) * s / W   (linear ramp)
    step s == W : B                                                  (the peak, exactly)
    W <= s <= M : eta_min + (B - eta_min) * (1 + cos(pi * (s - W) / (M - W))) / 2
    step s >  M : eta_min                                            (holds; never rises again)

NOTE: public versions of this schedule get the edges wrong: with ``W = 0`` some divide
by zero or start at ``warmup_start_lr`` instead of ``B``; some reach the peak one step
after the warmup; and a plain cosine continued past ``M`` climbs back up. Here ``W = 0``
starts at ``B``, the peak is at step ``W``, and the rate holds at ``eta_min`` after ``M``.
``M <= W`` is an error, because the cosine phase would have no length.

Example:
    >>> [round(warmup_cosine_lr(s, 1.0, warmup_steps=2, max_steps=4), 3) for s in range(6)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from knoblab.config import check_int
from knoblab.errors import ConfigError


def check_schedule(warmup_steps: int, max_steps: int, prefix: str = "train.scheduler") -> None:
    """Raise a one-line ``ConfigError`` unless ``0 <= warmup_steps < max_steps``."""
    check_int(f"{prefix}.warmup_steps", warmup_steps, 0)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= warmup_steps:
        raise ConfigError(
            f"{prefix}.max_steps",
            max_steps,
            f"an integer > warmup_steps ({warmup_steps})",
            "the cosine phase needs at least one step",
        )


def warmup_cosine_lr(
    step: int,
    base_lr: float,
    warmup_steps: int,
    max_steps: int,
    warmup_start_lr: float = 0.0,
    eta_min: float = 0.0,
) -> float:
    """The learning rate at optimizer step ``step`` (0-based); see the module docstring."""
    check_schedule(warmup_steps, max_steps)
    if step < warmup_steps:
        return warmup_start_lr + (base_lr - warmup_start_lr) * step / warmup_steps
    if step >= max_steps:
        return eta_min
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return eta_min + (base_lr - eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LinearWarmupCosineAnnealingLR(LRScheduler):
    """``torch.optim`` scheduler over ``warmup_cosine_lr``, one call of ``step()`` per optimizer step.

    Each parameter group's initial ``lr`` is its base rate ``B``. The rate is computed
    from the step counter alone (no recurrence on the previous rate), so resuming from
    ``state_dict()`` or jumping to a step gives exactly the uninterrupted value.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sched = LinearWarmupCosineAnnealingLR(opt, warmup_steps=10, max_steps=100)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        max_steps: int,
        warmup_start_lr: float = 0.0,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ):
        check_schedule(warmup_steps, max_steps)
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.warmup_start_lr = warmup_start_lr
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _lrs(self) -> list[float]:
        return [
            warmup_cosine_lr(
                self.last_epoch,
                base,
                self.warmup_steps,
                self.max_steps,
                self.warmup_start_lr,
                self.eta_min,
            )
            for base in self.base_lrs
        ]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return self._lrs()

    def _get_closed_form_lr(self) -> list[float]:
        return self._lrs()
