"""A full disk while a sweep writes records or samples.parquet: one line, finished work kept.

Where the test runs as root and ``mount -t tmpfs`` works, the sweep writes into a real
small tmpfs that fills up; otherwise (and additionally) ENOSPC is injected into
``knoblab.atomic``'s rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knoblab import cli
from knoblab.errors import DataError
from knoblab.profiling import records as rec
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset, WaitAdapter


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` at ``path``; yields False where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield False
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Write a filler file until the filesystem is full."""
    filler = folder / "filler.bin"
    with contextlib.suppress(OSError), open(filler, "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
    return filler


def _profile(small_sweep: list[str], out: Path, capsys: Any) -> tuple[int, str]:
    code = cli.main(["profile", *small_sweep, f"run.output_dir={out}"])
    return code, capsys.readouterr().err


def _complete(folder: Path) -> dict[str, bytes]:
    """Every record in ``folder`` (bytes by name); each must be whole and ok."""
    out = {}
    for name, r in rec.load_records(folder).items():
        assert r["status"] == "ok" and len(r["per_sample_results"]) == 3
        out[name] = (folder / name).read_bytes()
    return out


@pytest.mark.slow
def test_tmpfs_fills_during_records_then_parquet(
    tmp_path: Path, small_sweep: list[str], one_line: Any, capsys: Any, monkeypatch: Any
) -> None:
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "96k") as mounted:  # records ~18 KB each (cost fields)
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root); the injected test runs instead")
        monkeypatch.chdir(tmp_path)
        folder = disk / "shapes-vqa"
        # 1. the disk fills while records are written: one line, the records so far kept
        code, err = _profile(small_sweep, disk, capsys)
        assert code == 2
        line = one_line(err)
        assert "disk full writing" in line and "finished results are kept" in line
        survivors = _complete(folder)
        assert 1 <= len(survivors) < 6
        assert not list(folder.glob(".*.tmp"))
        # 2. more room: the rerun completes and keeps the finished records as they were
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        code, err = _profile(small_sweep, disk, capsys)
        assert code == 0, err
        records = _complete(folder)
        assert len(records) == 6
        assert all(records[n] == b for n, b in survivors.items())
        # 3. full again while samples.parquet is rebuilt: one line naming it, records intact
        filler = _fill(disk)
        (folder / "samples.parquet").unlink()  # frees ~40 KB; leave 8 KB for sweep.json
        st = os.statvfs(disk)
        (disk / "filler2.bin").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 8192))
        code, err = _profile(small_sweep, disk, capsys)
        assert code == 2
        line = one_line(err)
        assert "disk full writing" in line and "samples.parquet" in line
        assert _complete(folder) == records
        filler.unlink()
        (disk / "filler2.bin").unlink()
        code, err = _profile(small_sweep, disk, capsys)
        assert code == 0, err
        import pandas as pd

        assert len(pd.read_parquet(folder / "samples.parquet")) == 6 * 3


def _cfg(out: Path) -> dict[str, Any]:
    return {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": 4, "seed": 1}},
        "knobs": {"tier": ["low", "high"], "top_k": [1, 2], "num_active_blocks": [2, 4]},
        "design": {"name": "full"},
        "run": {"output_dir": str(out), "warmup_runs": 0, "progress": False},
    }


@pytest.mark.parametrize("full_at", ["record", "samples.parquet", "report.md"])
def test_injected_enospc(tmp_path: Path, monkeypatch: Any, full_at: str) -> None:
    """ENOSPC injected at the rename of the 4th record, or of the parquet / report."""
    import knoblab.atomic as atomic

    real_replace, seen = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        name = Path(dst).name
        seen.append(name)
        records = [n for n in seen if n.startswith("synthetic_")]
        if (full_at == "record" and len(records) == 4 and name.startswith("synthetic_")) or (
            name == full_at
        ):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    folder = tmp_path / "synthetic"
    with pytest.raises(DataError) as info:
        run_sweep(_cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset.synthetic(8))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("disk full writing ") and "kept" in msg
    kept = rec.load_records(folder)
    assert len(kept) == (3 if full_at == "record" else 8)
    assert all(len(r["per_sample_results"]) == 4 for r in kept.values())
    assert not list(folder.glob(".*.tmp"))  # the temporary file went with the error
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    result = run_sweep(_cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset.synthetic(8))
    assert len(result.records) == 8 and len(result.ran) == 8 - len(kept)
    assert (folder / "samples.parquet").exists() and (folder / "report.md").exists()
