"""Energy: RAPL through powercap (wraparound, package zones only), NVML, and honest unavailability."""

from __future__ import annotations

import os
import sys
import types

import pytest

from knoblab.profiling.energy import EnergyMeter, rapl_delta_uj, rapl_zones


def _zone(root, name, energy, max_range=1_000_000):
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


@pytest.mark.parametrize(
    ("start", "end", "max_range", "expected"),
    [
        (100, 400, 1000, 300),  # no wrap
        (900, 100, 1000, 201),  # wrapped once: 900 -> 1000 (101 steps incl. 0) -> 100
        (0, 1000, 1000, 1000),  # up to the top, no wrap
        (500, 500, 1000, 0),
    ],
)
def test_rapl_delta_table(start, end, max_range, expected):
    assert rapl_delta_uj(start, end, max_range) == expected


def test_rapl_sums_packages_not_subzones(tmp_path):
    p0 = _zone(tmp_path, "intel-rapl:0", 999_000)
    p1 = _zone(tmp_path, "intel-rapl:1", 10_000)
    sub = _zone(tmp_path, "intel-rapl:0:0", 5)  # cores, inside package 0
    meter = EnergyMeter("cpu", powercap=tmp_path)
    assert meter.available and meter.source == "rapl" and meter.reason is None
    span = meter.start()
    (p0 / "energy_uj").write_text("2000\n")  # wrapped: 999000 -> 1000000 -> 2000 = 3001 uJ
    (p1 / "energy_uj").write_text("1010000\n")  # + 1 J
    (sub / "energy_uj").write_text("900000\n")  # must not be added again
    joules, reason = meter.stop(span)
    assert reason is None
    assert joules == pytest.approx((3001 + 1_000_000) / 1e6)
    assert meter.describe()["scope"] == "whole CPU package(s)"


def test_rapl_unavailable_says_why(tmp_path):
    meter = EnergyMeter("cpu", powercap=tmp_path / "missing")
    assert not meter.available and "does not exist" in meter.reason
    assert meter.stop(meter.start()) == (None, meter.reason)
    assert rapl_zones(tmp_path)[1].endswith("no intel-rapl:<n> package zone (no RAPL on this CPU)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_rapl_root_only_counter_is_unavailable(tmp_path):
    d = _zone(tmp_path, "intel-rapl:0", 1)
    (d / "energy_uj").chmod(0)
    meter = EnergyMeter("cpu", powercap=tmp_path)
    assert not meter.available and "not readable (root only since Linux 5.10)" in meter.reason


def test_this_machine_gives_joules_or_a_reason():
    meter = EnergyMeter("cpu")
    joules, reason = meter.stop(meter.start())
    assert (joules is not None and joules >= 0 and reason is None) or (joules is None and reason)


class _FakeNVML(types.ModuleType):
    """nvidia-ml-py's names the meter calls, over a counter the test advances (mJ)."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail: bool = False):
        super().__init__("pynvml")
        self.mj, self.fail, self.index = 5_000, fail, None

    def nvmlInit(self):
        if self.fail:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index):
        self.index = index
        return "gpu"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.mj


def test_nvml_reads_millijoules(monkeypatch):
    fake = _FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = EnergyMeter("cuda:1")
    assert meter.source == "nvml" and fake.index == 1
    span = meter.start()
    fake.mj += 2_500
    assert meter.stop(span) == (2.5, None)


def test_nvml_failure_and_missing_package_are_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNVML(fail=True))
    meter = EnergyMeter("cuda:0")
    assert not meter.available and "NVML cannot read" in meter.reason
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    meter = EnergyMeter("cuda:0")
    assert meter.reason == "nvidia-ml-py is not installed (pip install 'knoblab[energy]')"
