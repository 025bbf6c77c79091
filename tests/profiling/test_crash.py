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


def _journal_units(path: Path) -> int:
    try:
        return sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_units", [3, 17])
def test_sigkill_mid_round_keeps_every_journaled_sample(
    tmp_path: Path, kill_after_units: int
) -> None:
    """Interleaved: killed inside a round; the rerun measures only what the journal lacks.

    The killed run answers with 3 tokens, the rerun with 2 (no timing involved): every
    3-token sample in the final records was measured before the kill and kept, every
    2-token one after; together they are each configuration's plan exactly once.
    """
    from knoblab.profiling.journal import JOURNAL, Journal

    script = tmp_path / "sweep.py"
    script.write_text(
        SCRIPT.replace("decode_ms=ms)", "decode_ms=ms, output_tokens=int(sys.argv[3]))")
    )
    out = tmp_path / "results"
    journal = out / "synthetic" / JOURNAL
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "3", "3"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _journal_units(journal) < kill_after_units:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not rec.load_records(out / "synthetic")  # mid-sweep: no configuration is final
    kept = Journal.read(journal)
    n_kept = sum(len(v) for v in kept.rows.values())
    assert n_kept >= kill_after_units and kept.bad <= 1  # at most the line in flight is torn
    rounds_started = {p for v in kept.rows.values() for p in v}
    assert len(rounds_started) < 6  # killed before the last round

    done = subprocess.run(
        [sys.executable, str(script), str(out), "0", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    records = rec.load_records(out / "synthetic")
    assert len(records) == 10 and not journal.exists()
    slow = 0
    for r in records.values():
        key = rec.config_key(r["knobs"])
        rows = r["per_sample_results"]
        assert [s["position"] for s in rows] == list(range(6))  # each position exactly once
        for s in rows:
            journaled = s["position"] in kept.rows.get(key, {})
            assert (s["output_tokens"] == 3) == journaled, (key, s["position"])
            slow += journaled
    assert slow == n_kept  # every sample journaled before the kill is in the records
