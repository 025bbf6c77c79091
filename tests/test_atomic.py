"""atomic_write: all-or-nothing, disk full is one line, stale temporaries of dead writers go."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from knoblab.atomic import atomic_write, ensure_dir, remove_stale_tmp, tmp_path
from knoblab.errors import DataError


def test_writes_bytes_text_and_callables(tmp_path):
    assert atomic_write(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "sub" / "b.txt", "é").read_text(encoding="utf-8") == "é"
    atomic_write(tmp_path / "c.txt", lambda p: p.write_text("from callable"))
    assert (tmp_path / "c.txt").read_text() == "from callable"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.bin", "b.txt", "c.txt", "sub"]


def test_disk_full_keeps_the_old_file_and_says_one_line(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")

    def full(p):
        p.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        DataError, match=r"^disk full writing .*r\.json; finished results are kept$"
    ):
        atomic_write(target, full)
    assert target.read_text() == "old"
    assert not tmp_path_exists(target)


def tmp_path_exists(target):
    return tmp_path(target).exists()


def test_other_errors_propagate_and_clean_up(tmp_path):
    def boom(p):
        p.write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x", boom)
    assert list(tmp_path.iterdir()) == []


def test_directory_that_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(DataError, match="is a file"):
        ensure_dir(f / "out")
    with pytest.raises(DataError, match="is a file"):
        atomic_write(f / "out.json", "{}")


def test_remove_stale_tmp_keeps_live_writers(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f".a.json.{dead_pid}.tmp").write_text("half")
    (tmp_path / f".b.json.{os.getpid()}.tmp").write_text("mine")
    (tmp_path / ".notes.tmp").write_text("not ours")
    assert remove_stale_tmp(tmp_path) == [f".a.json.{dead_pid}.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".b.json.{os.getpid()}.tmp",
        ".notes.tmp",
    ]


def _fsynced(monkeypatch) -> list[str]:
    """Paths fsynced from now on (each fd read back through /proc/self/fd)."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_not_durable_skips_the_fsyncs_and_sync_files_makes_them_up(tmp_path, monkeypatch):
    from knoblab.atomic import sync_files

    seen = _fsynced(monkeypatch)
    a = atomic_write(tmp_path / "a.json", "{}", durable=False)
    b = atomic_write(tmp_path / "sub" / "b.json", "[]", durable=False)
    assert seen == [] and a.read_text() == "{}" and b.read_text() == "[]"
    assert not list(tmp_path.glob(".*.tmp"))  # renamed into place all the same
    sync_files([a, b, tmp_path / "gone.json", a])
    assert seen == [str(a), str(b), str(a), str(tmp_path), str(tmp_path / "sub")]
    seen.clear()
    atomic_write(tmp_path / "c.json", "1")  # durable: the file, then its folder
    assert seen == [str(tmp_path / f".c.json.{os.getpid()}.tmp"), str(tmp_path)]
