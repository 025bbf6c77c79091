"""Fault suite (issue 16): kills, concurrent sweeps, full disks, corrupt files, bad inputs.

Every test asserts the three promises: nothing lost, nothing mixed, one clear line (no
traceback). Helpers here run ``knoblab`` the way a user does (a subprocess, or
``knoblab.cli.main`` in-process where a subprocess adds nothing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

#: A small reference-model sweep: 3 x 2 = 6 configurations of 3 samples, no warmup.
SMALL_SWEEP = [
    "design=full",
    "knobs.tier=[low]",
    "knobs.top_k=[1,2,4]",
    "knobs.num_active_blocks=[2,4]",
    "dataset.size=20",
    "dataset.sampling.num_samples_per_epoch=3",
    "run.warmup_runs=0",
    "run.progress=false",
]


def knoblab(
    args: list[str], cwd: Path, timeout: float = 300, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m knoblab.cli ARGS`` in ``cwd`` and wait; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "knoblab.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def one_line(stderr: str) -> str:
    """The single error line of ``stderr``; fails on a traceback or on several lines."""
    assert "Traceback" not in stderr, stderr
    lines = [
        ln for ln in stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln
    ]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(name="small_sweep")
def small_sweep_fixture() -> list[str]:
    """The overrides of a small reference-model sweep (6 configurations x 3 samples)."""
    return list(SMALL_SWEEP)


@pytest.fixture(name="run_knoblab")
def run_knoblab_fixture() -> Any:
    """``run_knoblab(args, cwd)``: run the CLI in a subprocess (see :func:`knoblab`)."""
    return knoblab


@pytest.fixture(name="one_line")
def one_line_fixture() -> Any:
    """``one_line(stderr)``: the single error line; fails on a traceback."""
    return one_line


@pytest.fixture(autouse=True)
def _lightning_logs_to_this_tests_stderr():
    """Lightning's own log handler holds the stderr of the test that imported it (pytest
    captures and closes each test's); point it at this test's, as a fresh process would."""
    import logging

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for lg in loggers:
        for h in getattr(lg, "handlers", []):
            stream = getattr(h, "stream", None)
            if type(h) is logging.StreamHandler and getattr(stream, "closed", False):
                h.stream = sys.stderr  # not setStream: it flushes the closed one
    yield
