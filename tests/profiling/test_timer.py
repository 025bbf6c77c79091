"""StageTimer on CPU: per-stage milliseconds, nesting, summing, reset; CUDA path with fakes."""

import time

import pytest
import torch

from knoblab.profiling import timer as timer_mod
from knoblab.profiling.timer import StageTimer


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def test_cpu_stages_in_ms_nested_and_summed() -> None:
    t = StageTimer("cpu")
    with t.stage("total"):
        with t.stage("vision"):
            _busy(3)
        for _ in range(2):
            with t.stage("decode"):
                _busy(2)
    ms = t.read()
    assert set(ms) == {"total", "vision", "decode"}
    # Lower bounds only: a busy-wait lasts at least its time; a loaded machine may stretch it.
    assert ms["vision"] >= 3
    assert ms["decode"] >= 4  # two intervals summed
    assert ms["total"] >= ms["vision"] + ms["decode"]
    t.reset()
    assert t.read() == {}


def test_stage_recorded_when_body_raises() -> None:
    t = StageTimer("cpu")
    with pytest.raises(RuntimeError), t.stage("vision"):
        raise RuntimeError("boom")
    assert "vision" in t.read()


class _FakeEvent:
    clock = 0.0

    def __init__(self, enable_timing: bool = False) -> None:
        self.t: float | None = None

    def record(self) -> None:
        _FakeEvent.clock += 1.0
        self.t = _FakeEvent.clock

    def elapsed_time(self, end: "_FakeEvent") -> float:
        assert end.t is not None and self.t is not None
        return end.t - self.t


def test_cuda_path_uses_events_nvtx_and_one_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda name: calls.append(f"push {name}"))
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: calls.append("pop"))
    t = timer_mod.StageTimer("cuda")
    with t.stage("vision"):
        pass
    with t.stage("prefill"):
        pass
    assert calls == ["push vision", "pop", "push prefill", "pop"]  # no sync while measuring
    assert t.read() == {"vision": 1.0, "prefill": 1.0}
    assert calls.count("sync") == 1
