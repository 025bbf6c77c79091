"""SIGKILL of ``knoblab profile`` at random points, then a rerun: complete, nothing lost or doubled.

The reference is an uninterrupted sweep of the same configuration list; after each
kill + rerun every configuration must hold exactly the reference's sample ids. The
kills land after a random number of journaled units (the default schedule interleaves
the configurations round by round, so most kills fall mid-round, with no record final).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from knoblab.profiling import records as rec

TASK = "shapes-vqa"


def ids_per_config(folder: Path) -> dict[str, list[int]]:
    """{configuration key: sample ids in plan order}; every record must be complete and ok."""
    out: dict[str, list[int]] = {}
    for r in rec.load_records(folder).values():
        key = rec.config_key(r["knobs"])
        assert key not in out, f"configuration {key} recorded twice"
        assert r["status"] == "ok", r.get("error")
        out[key] = [int(s["sample_id"]) for s in r["per_sample_results"]]
    return out


def _units(journal: Path) -> int:
    try:
        return journal.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_at(sweep: list[str], out: Path, cwd: Path, units_before: int, extra_s: float) -> int:
    """Start the sweep; SIGKILL it ``extra_s`` after ``units_before`` journaled units."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "knoblab.cli", "profile", *sweep, f"run.output_dir={out}"],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if _units(out / TASK / "journal.jsonl") >= units_before:
                break
            time.sleep(0.01)
        time.sleep(extra_s)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    return len(rec.load_records(out / TASK))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigkill_at_random_points_then_rerun(
    tmp_path: Path, small_sweep: list[str], run_knoblab: Any
) -> None:
    base = run_knoblab(["profile", *small_sweep, "run.output_dir=base"], tmp_path)
    assert base.returncode == 0, base.stderr
    want = ids_per_config(tmp_path / "base" / TASK)
    assert len(want) == 6 and all(len(v) == 3 for v in want.values())
    kills = 0
    for seed in (0, 1, 2):
        rng = random.Random(seed)
        out = tmp_path / f"killed{seed}"
        left = kill_at(small_sweep, out, tmp_path, rng.randint(1, 17), rng.uniform(0.0, 0.05))
        kills += left < len(want)
        folder = out / TASK
        for r in rec.load_records(folder).values():  # a record is complete or absent
            assert len(r["per_sample_results"]) == 3
        again = run_knoblab(["profile", *small_sweep, f"run.output_dir={out}"], tmp_path)
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in again.stderr
        assert ids_per_config(folder) == want  # nothing lost, nothing doubled, same samples
        assert not list(folder.glob(".*.tmp"))
        df = pd.read_parquet(folder / "samples.parquet")
        assert len(df) == 6 * 3 and not df.duplicated(["record", "position"]).any()
    assert kills >= 1  # at least one kill landed mid-sweep (not after the end)
