"""StageTimer: per-stage wall time of one inference, in milliseconds.

On CUDA each stage records a pair of ``torch.cuda.Event``s and nothing waits for the
GPU until :meth:`StageTimer.read`, which synchronizes ONCE and converts every pair to
milliseconds; timing therefore does not serialise the stages it measures (seed 003:
manual timing costs < 0.1 %). On CPU, ``time.perf_counter`` is read at each stage's
entry and exit. On CUDA every stage is also an NVTX range (``torch.cuda.nvtx``), so an
``nsys profile`` of the run shows ``vision`` / ``prefill`` / ``decode``; with no tool
attached an NVTX push/pop costs well under a microsecond.

NOTE: a stage entered several times before ``read`` (e.g. one ``decode`` stage per
token) reports the SUM of its intervals. Stages may nest (``total`` around the
others). ``read`` does not reset; call :meth:`reset` before the next measurement.

Example:
    >>> timer = StageTimer("cpu")
    >>> with timer.stage("vision"):
    ...     pass
    >>> sorted(timer.read())
    ['vision']
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class StageTimer:
    """Times named stages with CUDA events on GPU and ``time.perf_counter`` on CPU.

    Args:
        device: the device the stages run on (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            a ``torch.device``). Anything but CUDA is timed on the host clock.
        nvtx: push an NVTX range per stage on CUDA (ignored on CPU).
        track_cpu: also sum, per stage name and across ``reset``, host wall seconds and this
            process's CPU seconds (``time.process_time``, all threads) in ``cpu_totals``
            (``{name: [wall_s, cpu_s]}``): the sweep's load record (``profiling.drift``).
    """

    def __init__(
        self, device: str | torch.device = "cpu", nvtx: bool = True, track_cpu: bool = False
    ):
        dev = torch.device(device)
        self.cuda = dev.type == "cuda" and torch.cuda.is_available()
        self.nvtx = nvtx and self.cuda
        self.device = dev
        # name -> list of (start, end): floats (seconds) on CPU, CUDA events on GPU.
        self._spans: dict[str, list[tuple[Any, Any]]] = {}
        self.cpu_totals: dict[str, list[float]] | None = {} if track_cpu else None

    def reset(self) -> None:
        """Forget every recorded stage."""
        self._spans = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body as stage ``name`` (summed if entered several times)."""
        totals = self.cpu_totals
        c0 = time.process_time() if totals is not None else 0.0
        if self.cuda:
            w0 = time.perf_counter()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            if self.nvtx:
                torch.cuda.nvtx.range_push(name)
            start.record()
            try:
                yield
            finally:
                end.record()
                if self.nvtx:
                    torch.cuda.nvtx.range_pop()
                self._spans.setdefault(name, []).append((start, end))
                if totals is not None:
                    self._add_cpu(name, time.perf_counter() - w0, c0)
        else:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                t1 = time.perf_counter()
                self._spans.setdefault(name, []).append((t0, t1))
                if totals is not None:
                    self._add_cpu(name, t1 - t0, c0)

    def _add_cpu(self, name: str, wall_s: float, cpu0: float) -> None:
        self.add_cpu(name, wall_s, time.process_time() - cpu0)

    def add_cpu(self, name: str, wall_s: float, cpu_s: float) -> None:
        """Add a span timed by the caller to ``cpu_totals`` (nothing when not tracked): the
        runner adds each measured unit, its CPU time from the unit's memory span."""
        if self.cpu_totals is None:
            return
        tot = self.cpu_totals.setdefault(name, [0.0, 0.0])
        tot[0] += wall_s
        tot[1] += cpu_s

    def read(self) -> dict[str, float]:
        """Milliseconds per stage; on CUDA this is the one synchronize of the measurement."""
        if self.cuda and self._spans:
            torch.cuda.synchronize(self.device)
            return {
                name: float(sum(s.elapsed_time(e) for s, e in spans))
                for name, spans in self._spans.items()
            }
        return {
            name: sum(t1 - t0 for t0, t1 in spans) * 1000.0 for name, spans in self._spans.items()
        }
