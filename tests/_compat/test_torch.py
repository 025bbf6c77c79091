"""knoblab._compat.torch against the installed torch: each private still does its job."""

from __future__ import annotations

import multiprocessing

import pytest
import torch
from torch.utils.data import DataLoader

from knoblab._compat.torch import set_last_lr, shutdown_workers


@pytest.mark.multiprocess
def test_shutdown_workers_stops_the_workers_of_an_unfinished_iteration() -> None:
    it = iter(DataLoader(torch.arange(40), batch_size=2, num_workers=2))
    next(it)  # a chunk stopped part-way, as Lightning leaves it
    assert multiprocessing.active_children(), "torch started no workers"
    shutdown_workers(it)
    assert multiprocessing.active_children() == []
    shutdown_workers(it)  # idempotent


def test_shutdown_workers_without_workers_does_nothing() -> None:
    it = iter(DataLoader(torch.arange(4), batch_size=2))
    shutdown_workers(it)
    shutdown_workers(None)
    assert next(it).tolist() == [0, 1]


def test_set_last_lr_is_what_get_last_lr_returns() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    set_last_lr(sched, [0.25])
    assert sched.get_last_lr() == [0.25]
