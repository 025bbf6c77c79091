"""Crash safety: a sweep killed with SIGKILL mid-sweep and rerun ends complete, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from knoblab.profiling import records as rec

SCRIPT = textwrap.dedent(
    """
    import sys
    from knoblab.profiling.runner import run_sweep
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    cfg = {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": 6, "seed": 1}},
        "knobs": {"tier": ["low", "medium", "high"], "top_k": [1, 2, 4], "num_active_blocks": [2, 4, 6]},
        "design": {"name": "balanced"},
        "run": {"output_dir": sys.argv[1], "warmup_runs": 0, "num_runs_per_sample": 1, "progress": False},
    }
    ms = float(sys.argv[2])
    run_sweep(cfg, adapter=WaitAdapter(vision_ms=ms, prefill_ms=ms, decode_ms=ms), dataset=ListDataset.synthetic(10))
    """
)


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_is_complete(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT)
    out = tmp_path / "results"
    records_dir = out / "synthetic"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "3"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(rec.load_records(records_dir)) < 3:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    survivors = {
        p.name: p.read_bytes() for p in records_dir.glob("*.json") if p.name != "sweep.json"
    }
    assert 3 <= len(survivors) < 10  # killed mid-sweep
    for data in survivors.values():
        assert json.loads(data)["status"] == "ok"  # a record is complete or absent

    done = subprocess.run(
        [sys.executable, str(script), str(out), "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    records = rec.load_records(records_dir)
    assert len(records) == 10
    keys = [rec.config_key(r["knobs"]) for r in records.values()]
    assert len(set(keys)) == 10  # every configuration exactly once
    for name, data in survivors.items():
        assert (records_dir / name).read_bytes() == data  # finished work kept, not redone
    assert not list(records_dir.glob(".*.tmp"))
    df = pd.read_parquet(records_dir / "samples.parquet")
    assert len(df) == 10 * 6 and not df.duplicated(["record", "position"]).any()
    assert all(len(r["per_sample_results"]) == 6 for r in records.values())
