"""torchrun helpers: rank and world size, broadcast from rank 0, gather to rank 0.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised on first use:
NCCL when CUDA is available (``KNOBLAB_BACKEND=gloo`` forces gloo), gloo otherwise.
Without ``torchrun`` every helper is the identity for one process.

Example:
    >>> dist_info()
    (0, 1)
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch


# -- distributed helpers ----------------------------------------------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world_size); initialises the process group under torchrun (gloo on CPU)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        backend = (
            "nccl"
            if torch.cuda.is_available() and os.environ.get("KNOBLAB_BACKEND") != "gloo"
            else "gloo"
        )
        dist.init_process_group(backend=backend)
        # Without an explicit destroy, the group's threads meet interpreter teardown and a
        # rank can abort ("terminate called without an active exception", SIGABRT) after its
        # work is done: seen on a 2-core CI machine, about 1 run in 6.
        atexit.register(_shutdown)
    return dist.get_rank(), dist.get_world_size()


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: int) -> None:
    """Wait for every rank (a no-op for one process)."""
    if world == 1:
        return
    import torch.distributed as dist

    dist.barrier()


def broadcast(obj: Any, world: int) -> Any:
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, rank: int, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out or []
