"""The sweep's records (re-exported from :mod:`knoblab.records`, their one home) and the environment.

The record schema, aggregates, writer, reader and migrations live in
:mod:`knoblab.records`; every public name of it is importable from here too, as before.
This module adds what the profiler records about the machine: ``environment_info``
(package versions, device, dtype, seed, sampling plan, git revision), ``device_name``
and ``git_revision``.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from knoblab.records import *  # noqa: F403 - the re-export of the public names
from knoblab.records import __all__ as _records_all

#: The packages whose versions go into ``environment.json``.
PACKAGES: tuple[str, ...] = (
    "knoblab",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "hydra-core",
    "omegaconf",
    "lightning",
    "transformers",
    "safetensors",
)


@functools.lru_cache(maxsize=8)
def git_revision(path: str | os.PathLike[str] | None = None) -> str | None:
    """``<sha>`` (``+dirty`` when modified) of the git checkout holding ``path``, or None.

    NOTE: cached per process (asked once per sweep, of a checkout that does not change).
    """
    where = str(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    """A human name of ``device``: the GPU model, or the CPU model on the host."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(
    *,
    device: str,
    dtype: str,
    seed: int | None,
    sampling: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Package versions, device, dtype, seed in effect, sampling plan, git revision."""
    import torch

    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
        "device_name": device_name(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch_num_threads": torch.get_num_threads(),
        "dtype": dtype,
        "seed": seed,
        "sampling": dict(sampling or {}),
        "git_revision": git_revision(),
        "argv": list(sys.argv),
    }
    info.update(extra or {})
    return info


__all__ = [*_records_all, "PACKAGES", "device_name", "environment_info", "git_revision"]
