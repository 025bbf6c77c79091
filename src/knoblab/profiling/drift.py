"""The machine's load over a sweep, and whether the machine's speed drifted while it ran.

Two things go into ``environment.json`` (names from the project's shared contract):

- ``load`` (:class:`LoadMonitor`): the 1/5/15-minute load average at the start and end
  of the measurement and its highest 1-minute value in between; this process's CPU
  time against wall time per model stage (``vision``/``prefill``/``decode``, all
  threads; a stage whose CPU time is well under its wall time was descheduled, on CPU)
  and per sweep stage (``setup``/``measure``); and the CPU share of other
  processes from ``/proc/stat`` (busy time of all CPUs less this process's CPU time,
  over all CPUs' time; ``None`` where ``/proc/stat`` is not readable), with a coarse
  time series (at most one point per 0.5 s, at most 240 points).
- ``drift`` (:func:`drift_statistic`): from a *probe*, one unrecorded timed inference
  of a fixed (control configuration, control sample) between rounds. The same work
  measured again and again changes only when the machine does. With ``x`` the probe
  latencies over their median, ``noise`` = sigma * 2.5 where sigma = median(|x[i+1] -
  x[i]|) / 0.6745 / sqrt(2) (the short-term scatter, robust to a slow drift), and
  ``magnitude`` = q90 - q10 of the running median of 5 probes (the long-term change).
  Drift is ``detected`` when magnitude > noise with at least 6 probes, and the change
  is at least 0.05 ms (:data:`MIN_ABS_MS`: below that, a probe of a few microseconds
  moves with the interpreter's own jitter, not with the machine).

NOTE: the factor 2.5: in 2,000 simulated sweeps of 6 to 300 probes without drift
(normal and Student-t(3) noise) the 95th percentile of magnitude / sigma stayed at or
below 2.35, so a quiet machine raises a false alarm less than 5 % of the time.

Example:
    >>> drift_statistic([10.0] * 5 + [13.0] * 5)["detected"]
    True
    >>> drift_statistic([10.0, 10.2, 9.9, 10.1, 10.0, 9.8, 10.1, 10.0])["detected"]
    False
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_PROBES = 6
NOISE_FACTOR = 2.5
WINDOW = 5
MIN_ABS_MS = 0.05
STATISTIC = (
    "control probe: q90 - q10 of the running median (5) of probe latency / its median, "
    "against 2.5 x the short-term scatter (successive differences)"
)


def _running_median(x: np.ndarray, window: int) -> np.ndarray:
    h = window // 2
    return np.array([np.median(x[max(0, i - h) : i + h + 1]) for i in range(len(x))])


def drift_statistic(
    probes_ms: Sequence[float], *, what: str = "control configuration"
) -> dict[str, Any]:
    """``{"detected", "magnitude", "noise", "statistic", "message", "probes"}`` of a probe series."""
    x = np.asarray([p for p in probes_ms if p is not None and np.isfinite(p)], dtype=float)
    base = {"statistic": STATISTIC, "probes": int(x.size)}
    if x.size < MIN_PROBES or float(np.median(x)) <= 0:
        return base | {
            "detected": False,
            "magnitude": 0.0,
            "noise": 0.0,
            "message": f"{x.size} drift probe(s): too few to tell drift from noise "
            f"(needs >= {MIN_PROBES})",
        }
    rel = x / float(np.median(x))
    sigma = float(np.median(np.abs(np.diff(rel)))) / 0.6745 / np.sqrt(2)
    smooth = _running_median(rel, WINDOW)
    magnitude = float(np.percentile(smooth, 90) - np.percentile(smooth, 10))
    noise = NOISE_FACTOR * sigma
    detected = magnitude > noise and magnitude * float(np.median(x)) >= MIN_ABS_MS
    message = (
        f"the drift probe ({what}) moved {100 * magnitude:.1f}% over the sweep against "
        f"{100 * noise:.1f}% noise ({x.size} probes): {'drift' if detected else 'no drift'}"
    )
    return base | {
        "detected": bool(detected),
        "magnitude": round(float(magnitude), 4),
        "noise": round(float(noise), 4),
        "message": message,
    }


def _proc_stat() -> tuple[float, float] | None:
    """(busy seconds, total seconds) of all CPUs since boot, from ``/proc/stat``; None if unreadable."""
    try:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
        vals = [float(v) for v in parts[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    user, nice, system, idle, iowait, irq, softirq, steal = (vals + [0.0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / tick, (busy + idle + iowait) / tick


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class LoadMonitor:
    """Samples load average and other processes' CPU share; sums CPU/wall per stage.

    ``tick()`` is cheap (two small reads at most every 0.5 s); call it between units.
    """

    INTERVAL_S = 0.5
    MAX_POINTS = 240

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.stat0 = self._last_stat = _proc_stat()
        self._last_cpu = self.cpu0
        self._last_t = self.t0
        self.load_start = _loadavg()
        self.load_max = (self.load_start or [0.0])[0]
        self.series: list[dict[str, Any]] = []
        self.sweep_stages: dict[str, dict[str, float]] = {}

    def _others(self, stat: tuple[float, float] | None, cpu: float, since: Any) -> float | None:
        if stat is None or since is None:
            return None
        busy, total = stat[0] - since[0], stat[1] - since[1]
        if total <= 0:
            return None
        return round(min(max((busy - (cpu)) / total, 0.0), 1.0), 4)

    def tick(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_t < self.INTERVAL_S:
            return
        cpu, stat, load = time.process_time(), _proc_stat(), _loadavg()
        others = self._others(stat, cpu - self._last_cpu, self._last_stat)
        if load is not None:
            self.load_max = max(self.load_max, load[0])
        self.series.append(
            {
                "t_s": round(now - self.t0, 2),
                "loadavg_1m": None if load is None else load[0],
                "others_cpu_share": others,
            }
        )
        if len(self.series) > self.MAX_POINTS:  # keep the whole span, coarser
            self.series = self.series[::2]
        self._last_t, self._last_cpu, self._last_stat = now, cpu, stat

    def span(self, name: str, wall_s: float, cpu_s: float) -> None:
        """Record a sweep stage's wall and CPU seconds."""
        self.sweep_stages[name] = _cpu_wall(wall_s, cpu_s)

    def summary(self, stage_totals: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
        """The ``load`` entry of ``environment.json``."""
        cpu = time.process_time() - self.cpu0
        stat = _proc_stat()
        stages = {k: _cpu_wall(v[0], v[1]) for k, v in (stage_totals or {}).items()}
        return {
            "cpu_count": os.cpu_count(),
            "loadavg_start": self.load_start,
            "loadavg_end": _loadavg(),
            "loadavg_1m_max": self.load_max,
            "others_cpu_share": self._others(stat, cpu, self.stat0),
            "others_cpu_share_max": max(
                (p["others_cpu_share"] for p in self.series if p["others_cpu_share"] is not None),
                default=None,
            ),
            "process_cpu_per_wall": {"model_stages": stages, "sweep_stages": self.sweep_stages},
            "series": self.series,
            "method": "load average: os.getloadavg; others' CPU share: /proc/stat busy time "
            "of all CPUs less this process's CPU time, over all CPUs' time; CPU per wall: "
            "this process's CPU time (all threads: time.process_time; a measured unit's: "
            "getrusage around it) over time.perf_counter",
        }


def _cpu_wall(wall_s: float, cpu_s: float) -> dict[str, float]:
    return {
        "wall_s": round(wall_s, 4),
        "cpu_s": round(cpu_s, 4),
        "cpu_per_wall": round(cpu_s / wall_s, 3) if wall_s > 0 else 0.0,
    }
