"""Energy where the hardware tells it: NVML on a GPU, RAPL through the powercap sysfs on a CPU.

:class:`EnergyMeter` reads a cumulative hardware energy counter before and after a span
of work (one batch) and reports the joules in between, or None and the reason why no
counter could be read. It never estimates (no TDP x time guess).

* **GPU**: NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver
  loaded; Volta and newer) through ``nvidia-ml-py`` (the optional extra
  ``knoblab[energy]``). The counter covers the whole GPU, whatever process uses it.
* **CPU**: Intel RAPL (also AMD's, under the same name) through the Linux powercap
  sysfs: ``/sys/class/powercap/intel-rapl:<n>/energy_uj`` for each package ``n``
  (sub-zones ``intel-rapl:<n>:<m>`` - cores, uncore, dram - lie inside their package and
  are not added again). The counter wraps at ``max_energy_range_uj``; one wrap between
  two reads is undone (a span longer than a wrap period, minutes to hours, is not
  supported). The counter covers the whole package: other processes' work counts too.
  NOTE: since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694); as a
  user the meter is then unavailable with that reason.

The counters update about every millisecond (RAPL) or faster (NVML), so a span of a few
milliseconds reads with a large relative error: measure batches, not single tokens.

Joules per sample are the batch's joules over its samples; per generated token, over
its output tokens (``knoblab.profiling.batch.BatchMeasurement.rows``).

Example:
    >>> meter = EnergyMeter("cpu")
    >>> span = meter.start()
    >>> joules, reason = meter.stop(span)   # (None, "...not readable...") without RAPL access
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class _Zone:
    energy: Path
    max_range_uj: int


def rapl_zones(root: Path = POWERCAP) -> tuple[list[_Zone], str | None]:
    """The readable package zones under ``root``, or ``([], reason)``."""
    if not root.is_dir():
        return [], f"{root} does not exist (no powercap driver: a VM or a non-Linux host)"
    packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not packages:
        return [], f"{root} has no intel-rapl:<n> package zone (no RAPL on this CPU)"
    zones = []
    for p in packages:
        energy = p / "energy_uj"
        try:
            energy.read_text()
            max_range = int((p / "max_energy_range_uj").read_text())
        except PermissionError:
            return [], f"{energy} is not readable (root only since Linux 5.10)"
        except (OSError, ValueError) as exc:
            return [], f"{energy} cannot be read ({exc})"
        zones.append(_Zone(energy, max_range))
    return zones, None


def rapl_delta_uj(start: int, end: int, max_range_uj: int) -> int:
    """Microjoules between two readings of a counter that wraps at ``max_range_uj``."""
    return end - start if end >= start else end + (max_range_uj + 1) - start


def _nvml(device: torch.device) -> tuple[Any, Any, str | None]:
    """``(pynvml, handle, None)`` for ``device``'s GPU, or ``(None, None, reason)``."""
    try:
        import pynvml
    except ImportError:
        return None, None, "nvidia-ml-py is not installed (pip install 'knoblab[energy]')"
    try:
        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as exc:
        return None, None, f"NVML cannot read the GPU's energy counter ({exc})"
    return pynvml, handle, None


class EnergyMeter:
    """Joules over spans of work on ``device`` (module docstring: sources and limits).

    Attributes:
        source: ``nvml``, ``rapl`` or None when unavailable.
        reason: why no energy can be read (None when a source is available).
    """

    def __init__(self, device: str | torch.device = "cpu", *, powercap: Path = POWERCAP):
        dev = torch.device(device)
        self.source: str | None = None
        self.reason: str | None = None
        self._zones: list[_Zone] = []
        self._nvml: Any = None
        self._handle: Any = None
        if dev.type == "cuda":
            self._nvml, self._handle, self.reason = _nvml(dev)
            self.source = "nvml" if self._nvml is not None else None
        else:
            self._zones, self.reason = rapl_zones(Path(powercap))
            self.source = "rapl" if self._zones else None

    @property
    def available(self) -> bool:
        return self.source is not None

    def _read(self) -> list[int]:
        if self.source == "nvml":
            return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))]
        return [int(z.energy.read_text()) for z in self._zones]

    def start(self) -> list[int] | None:
        """The counters now (None when unavailable): pass to :meth:`stop`."""
        return self._read() if self.available else None

    def stop(self, start: list[int] | None) -> tuple[float | None, str | None]:
        """``(joules since start, None)``, or ``(None, reason)`` when unavailable."""
        if not self.available or start is None:
            return None, self.reason or "the meter was not started"
        end = self._read()
        if self.source == "nvml":
            return (end[0] - start[0]) / 1e3, None  # millijoules
        uj = sum(
            rapl_delta_uj(a, b, z.max_range_uj)
            for a, b, z in zip(start, end, self._zones, strict=True)
        )
        return uj / 1e6, None

    def describe(self) -> dict[str, Any]:
        """For the environment record: the source, or why there is none."""
        return {
            "source": self.source,
            "unavailable_reason": self.reason,
            "zones": [str(z.energy) for z in self._zones],
            "scope": {"nvml": "whole GPU", "rapl": "whole CPU package(s)"}.get(self.source or ""),
        }
