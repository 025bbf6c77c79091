"""Hardware presets (``conf/hardware/{cpu,a100,h100}.yaml``): device, threads, TF32, memory savings.

The preset is merged under the ``model`` section by ``build_adapter`` (model keys win),
so ``device`` reaches the adapter; the process-wide settings are applied here, before
the model loads. NOTE: ``dtype`` belongs to the model section (names in :mod:`knoblab.dtypes`).

Example:
    >>> apply_hardware({"device": "cpu"}).device
    'cpu'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from knoblab.config import to_dataclass
from knoblab.dtypes import canonical_dtype
from knoblab.errors import ConfigError


@dataclass
class MemorySavings:
    """``hardware.memory_savings``: what the A100 preset turns on.

    Attributes:
        expandable_segments: ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` (set
            before CUDA starts; fewer fragmentation OOMs when shapes change per sample).
        empty_cache_between_configs: ``torch.cuda.empty_cache()`` after each configuration.
    """

    expandable_segments: bool = False
    empty_cache_between_configs: bool = False


@dataclass
class HardwareConfig:
    """The ``hardware`` preset (``conf/hardware/{cpu,a100,h100}.yaml``); also merged under ``model``.

    Attributes:
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        num_threads: ``torch.set_num_threads`` (null: torch's default).
        tf32: allow TF32 matmuls and convolutions on Ampere and newer.
        cudnn_benchmark: cuDNN autotuning (off: shapes change per sample).
        memory_savings: see :class:`MemorySavings`.
        compile: passed to adapters that support ``torch.compile``.
        dtype: optional; normally the model section's ``dtype``.
    """

    device: str = "cpu"
    num_threads: int | None = None
    tf32: bool = False
    cudnn_benchmark: bool = False
    memory_savings: MemorySavings = field(default_factory=MemorySavings)
    compile: bool = False
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None:  # one vocabulary: knoblab.dtypes (bf16 -> bfloat16)
            self.dtype = canonical_dtype(self.dtype, "dtype")


def apply_hardware(section: Mapping[str, Any] | None) -> HardwareConfig:
    """Validate ``cfg.hardware`` and apply its process-wide settings (threads, TF32, allocator)."""
    hw = to_dataclass(section or {}, HardwareConfig, "hardware")
    if hw.num_threads is not None:
        if hw.num_threads < 1:
            raise ConfigError("hardware.num_threads", hw.num_threads, "an integer >= 1 or null")
        torch.set_num_threads(hw.num_threads)
    if hw.memory_savings.expandable_segments and "PYTORCH_CUDA_ALLOC_CONF" not in os.environ:
        # Read by the caching allocator when CUDA initialises, i.e. before the model loads.
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    if hw.device.startswith("cuda") and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = hw.tf32
        torch.backends.cudnn.allow_tf32 = hw.tf32
        torch.backends.cudnn.benchmark = hw.cudnn_benchmark
        if os.environ.get("LOCAL_RANK") is not None and hw.device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return hw
