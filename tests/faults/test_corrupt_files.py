"""Corrupt and stray files in a sweep's folder: a rerun repairs what it must, mixes nothing.

A truncated or zero-byte record (which an atomic write never leaves, but a copy or a
full disk of another tool can), random bytes under a record's name, a stale temporary
file of a dead writer, and a lock file holding garbage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from knoblab.profiling import records as rec
from knoblab.profiling.lock import LOCK_NAME
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset, WaitAdapter


def _cfg(out: Path) -> dict[str, Any]:
    return {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": 4, "seed": 1}},
        "knobs": {"tier": ["low", "high"], "top_k": [1, 2], "num_active_blocks": [2, 4]},
        "design": {"name": "full"},
        "run": {"output_dir": str(out), "warmup_runs": 0, "progress": False},
    }


def _ids(folder: Path) -> dict[str, list[int]]:
    out = {}
    for r in rec.load_records(folder).values():
        key = rec.config_key(r["knobs"])
        assert key not in out
        out[key] = [s["sample_id"] for s in r["per_sample_results"]]
    return out


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_rerun_over_corrupt_files(tmp_path: Path) -> None:
    def sweep() -> Any:
        return run_sweep(_cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset.synthetic(8))

    first = sweep()
    folder = first.out_dir
    want = _ids(folder)
    names = sorted(first.records)
    assert len(names) == 8
    data = (folder / names[0]).read_bytes()
    (folder / names[0]).write_bytes(data[: len(data) // 2])  # truncated
    (folder / names[1]).write_bytes(b"")  # zero bytes
    (folder / names[2]).write_bytes(os.urandom(2000))  # random bytes under a record's name
    stale = folder / f".{names[3]}.{_dead_pid()}.tmp"
    stale.write_bytes(data[:100])
    (folder / LOCK_NAME).write_bytes(os.urandom(64))
    untouched = {n: (folder / n).read_bytes() for n in names[3:]}

    again = sweep()
    assert sorted(again.ran) == names[:3]  # exactly the damaged ones measured again
    assert _ids(folder) == want  # same samples, each configuration once
    assert {n: (folder / n).read_bytes() for n in names[3:]} == untouched
    assert not stale.exists()
    df = pd.read_parquet(folder / "samples.parquet")
    assert len(df) == 8 * 4 and not df.duplicated(["record", "position"]).any()
