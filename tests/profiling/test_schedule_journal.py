"""The schedule (units in order) and the journal (append, torn lines, stale keys, disk full)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from knoblab.errors import DataError
from knoblab.profiling import journal as jmod
from knoblab.profiling.journal import JOURNAL, Journal
from knoblab.profiling.schedule import round_order, units


def test_interleaved_rounds_visit_every_configuration_once_in_seeded_orders() -> None:
    got = list(units(5, 4, "interleaved", seed=3))
    assert len(got) == 20 and len(set(got)) == 20
    for r in range(4):
        block = got[5 * r : 5 * r + 5]
        assert {u[1] for u in block} == {r} and sorted(u[0] for u in block) == list(range(5))
        assert [c for c, _ in block] == round_order(5, r, 3)
    assert len({tuple(round_order(5, r, 3)) for r in range(4)}) > 1
    assert list(units(5, 4, "interleaved", seed=3)) == got  # seeded
    assert list(units(5, 4, "interleaved", seed=4)) != got


def test_sequential_order_pending_and_dropping_out() -> None:
    assert list(units(2, 3, "sequential")) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    # a journaled unit is not measured again
    assert (0, 1) not in list(units(2, 3, "sequential", pending=lambda c, r: (c, r) != (0, 1)))
    # a configuration that stops (read lazily) drops out of the rounds that follow
    stopped: set[int] = set()
    seen = []
    for c, r in units(3, 4, "interleaved", seed=0, active=lambda c: c not in stopped):
        seen.append((c, r))
        if c == 1 and r == 1:
            stopped.add(1)
    assert (1, 1) in seen and (1, 2) not in seen and (1, 3) not in seen
    assert sum(1 for c, _ in seen if c != 1) == 8
    with pytest.raises(ValueError, match="interleaved, sequential"):
        list(units(1, 1, "random"))


def _row(pos: int, **kw: Any) -> dict[str, Any]:
    return {"position": pos, "T_total": float(pos), "status": "ok", **kw}


def test_journal_appends_reads_back_and_last_line_of_a_position_wins(tmp_path: Path) -> None:
    j = Journal.open(tmp_path, keep=lambda k: True, fsync_every_s=0)
    j.append("a", {"top_k": 1}, [_row(0), _row(1)])
    j.append("b", {}, [_row(0, tiling=(1, 2))])
    j.append("a", {"top_k": 1}, [_row(1, T_total=9.0)])  # same position again: replaces
    j.close()
    state = Journal.read(tmp_path / JOURNAL)
    assert sorted(state.rows) == ["a", "b"] and state.bad == 0
    assert state.rows["a"][1]["T_total"] == 9.0 and len(state.rows["a"]) == 2
    assert state.rows["b"][0]["tiling"] == [1, 2] and state.effective["a"] == {"top_k": 1}


def test_torn_last_line_and_stale_keys_are_compacted_away(tmp_path: Path) -> None:
    j = Journal.open(tmp_path, keep=lambda k: True)
    j.append("a", {}, [_row(0)])
    j.append("done", {}, [_row(0)])
    j.close()
    with open(tmp_path / JOURNAL, "ab") as fh:
        fh.write(b'{"key": "a", "effective": {}, "rows": [{"posi')  # killed mid-write
    assert Journal.read(tmp_path / JOURNAL).bad == 1
    j = Journal.open(tmp_path, keep=lambda k: k != "done")  # "done" has its record now
    assert sorted(j.state.rows) == ["a"]
    j.append("a", {}, [_row(1)])  # appended after a whole line, never glued to the torn one
    j.close()
    state = Journal.read(tmp_path / JOURNAL)
    assert state.bad == 0 and sorted(state.rows["a"]) == [0, 1] and "done" not in state.rows
    j = Journal.open(tmp_path, keep=lambda k: True)
    j.remove()
    assert not (tmp_path / JOURNAL).exists()


def test_disk_full_while_journaling_is_one_line(tmp_path: Path, monkeypatch: Any) -> None:
    j = Journal.open(tmp_path, keep=lambda k: True)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jmod.os, "write", full)
    with pytest.raises(DataError, match=r"^disk full writing .*journal.jsonl; finished results"):
        j.append("a", {}, [_row(0)])
    monkeypatch.setattr(jmod.os, "write", lambda fd, data: len(data) // 2)  # a short write
    with pytest.raises(DataError, match="disk full"):
        j.append("a", {}, [_row(0)])
    monkeypatch.undo()
    j.close()
    assert os.path.getsize(tmp_path / JOURNAL) == 0


def _fsyncs(monkeypatch: Any) -> list[str]:
    """Names of the threads that fsync, in order (the real fsync still runs)."""
    import threading

    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(jmod.os, "fsync", spy)
    return seen


def test_grouped_fsync_runs_on_a_background_thread_and_close_syncs_last(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Once fsync_every_s has passed, an append only wakes the fsync thread; close waits
    for it and fsyncs once more in the caller, so nothing appended is left unsynced."""
    seen = _fsyncs(monkeypatch)
    j = Journal.open(tmp_path, keep=lambda k: True, fsync_every_s=1e-9)
    for p in range(5):
        j.append("a", {}, [_row(p)])
    assert j._syncer is not None and "MainThread" not in seen  # the loop never waited
    j.close()
    assert seen[-1] == "MainThread" and j._syncer is None
    assert set(seen[:-1]) <= {"knoblab-journal-fsync"}
    assert sorted(Journal.read(tmp_path / JOURNAL).rows["a"]) == list(range(5))


def test_per_unit_fsync_stays_in_the_loop(tmp_path: Path, monkeypatch: Any) -> None:
    seen = _fsyncs(monkeypatch)
    j = Journal.open(tmp_path, keep=lambda k: True, fsync_every_s=0)
    for p in range(3):
        j.append("a", {}, [_row(p)])
    assert seen == ["MainThread"] * 3 and j._syncer is None
    j.close()


def test_a_failed_background_fsync_is_one_line_at_the_next_append(
    tmp_path: Path, monkeypatch: Any
) -> None:
    j = Journal.open(tmp_path, keep=lambda k: True, fsync_every_s=1e-9)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jmod.os, "fsync", full)
    j.append("a", {}, [_row(0)])  # wakes the thread, whose fsync fails
    assert j._syncer is not None
    j._syncer._thread.join(timeout=5)
    with pytest.raises(DataError, match=r"^disk full writing .*journal.jsonl; finished results"):
        j.append("a", {}, [_row(1)])
    with pytest.raises(DataError, match="disk full"):
        j.close()
    assert j._fd is None
