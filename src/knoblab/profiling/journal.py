"""The sweep's journal: an append-only log of every measured unit, so a kill loses one sample.

``<out_dir>/journal.jsonl`` holds one JSON line per measured unit of work:
``{"key": <config key>, "effective": <what apply_knobs returned>, "rows": [<per-sample
row>, ...]}``. A configuration's record (the per-configuration JSON file) is built
from its journaled rows once its last unit lands; when every record of the sweep is
final the journal is removed.

Crash safety: each line goes to the file with ONE ``os.write`` on an ``O_APPEND``
descriptor before the next sample starts; the kernel keeps it whatever happens to the
process, so a SIGKILL loses at most the unit in flight. ``fsync`` (which only matters
when the machine itself goes down) runs at most once per ``fsync_every_s`` seconds and
when the journal closes.

NOTE: fsync per unit costs ~2 ms on an ext4 VM disk: 25 % of a reference-model sample
(8 ms), against the runner's 1 % budget (``benchmarks/bench_overhead.py``). Group
commit once a second bounds a power loss to the last second of samples, and the
grouped fsync runs on a background thread (``os.fsync`` releases the GIL): the loop
only wakes it, instead of waiting ~5-20 ms on the disk once a second (~100 us per
reference-model sample). An fsync error surfaces at the next ``append`` or at
``close``. ``run.journal_fsync_s=0`` fsyncs every unit, in the loop.

A line cut short (the process died inside ``write``, or the disk filled) is dropped
when the journal is read back; the rows of a configuration that already has a record
are stale (the record is final) and dropped too, and the file is rewritten atomically
without them before anything is appended (compaction). The same (configuration,
position) written twice keeps the last line: nothing is ever counted twice.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> j = Journal.open(d, keep=lambda key: True)
    >>> j.append("k", {}, [{"position": 0, "T_total": 1.0}])
    >>> j.close()
    >>> Journal.read(d / JOURNAL).rows["k"][0]["T_total"]
    1.0
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knoblab.atomic import atomic_write
from knoblab.errors import DataError
from knoblab.records import dumpb

JOURNAL = "journal.jsonl"


@dataclass
class JournalState:
    """What a journal holds: rows per configuration key and position, and more.

    Attributes:
        rows: ``{config key: {plan position: row}}``.
        effective: ``{config key: the effective knobs last journaled}``.
        lines: ``{config key: [the line's text, ...]}`` (for compaction).
        bad: lines that were not whole JSON (a write cut short).
    """

    rows: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    effective: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)
    bad: int = 0


class Journal:
    """An open journal (rank 0 only). Use :meth:`open`; ``append`` per unit; ``close``."""

    def __init__(self, path: Path, state: JournalState, fsync_every_s: float = 1.0):
        self.path = path
        self.state = state
        self.fsync_every_s = float(fsync_every_s)
        self._fd: int | None = None
        self._dirty = False
        self._last_sync = time.monotonic()
        self._syncer: _Syncer | None = None

    # -- reading -------------------------------------------------------------------------
    @staticmethod
    def read(path: Path) -> JournalState:
        """Parse ``path`` (missing: empty); lines that are not whole JSON are counted in ``bad``."""
        state = JournalState()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return state
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
                key = str(entry["key"])
                rows = list(entry["rows"])
                positions = [int(r["position"]) for r in rows]
            except (ValueError, KeyError, TypeError):
                state.bad += 1
                continue
            by_pos = state.rows.setdefault(key, {})
            for pos, row in zip(positions, rows, strict=True):
                by_pos[pos] = row
            state.effective[key] = dict(entry.get("effective") or {})
            state.lines.setdefault(key, []).append(raw.decode("utf-8"))
        return state

    @classmethod
    def open(
        cls, out_dir: Path, keep: Callable[[str], bool], fsync_every_s: float = 1.0
    ) -> Journal:
        """Read ``out_dir``'s journal, drop stale keys (``keep(key)`` false) and torn lines.

        The file is rewritten atomically (compaction) only when something was dropped.
        """
        path = Path(out_dir) / JOURNAL
        state = cls.read(path)
        stale = [k for k in state.rows if not keep(k)]
        for k in stale:
            state.rows.pop(k)
            state.effective.pop(k, None)
            state.lines.pop(k, None)
        if state.bad or stale:
            text = "".join(line + "\n" for lines in state.lines.values() for line in lines)
            atomic_write(path, text)
        state.lines = {}  # only compaction needs the text
        journal = cls(path, state, fsync_every_s)
        journal._open_fd()
        return journal

    # -- writing -------------------------------------------------------------------------
    def _open_fd(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> Exception:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DataError(f"disk full writing {self.path}; finished results are kept")
        return DataError(f"cannot write {self.path}: {exc.strerror or exc}")

    def append(
        self, key: str, effective: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Journal one unit's rows of configuration ``key`` (one ``os.write``)."""
        if self._fd is None:
            self._open_fd()
        data = dumpb({"key": key, "effective": dict(effective), "rows": list(rows)}) + b"\n"
        try:
            written = os.write(self._fd, data)  # type: ignore[arg-type]
            if written != len(data):  # a short write on a full disk: the line is torn
                raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise self._error(exc) from None
        by_pos = self.state.rows.setdefault(key, {})
        for r in rows:  # the caller's rows, not copies: what was written is on disk
            by_pos[int(r["position"])] = r
        self.state.effective[key] = dict(effective)
        self._dirty = True
        if time.monotonic() - self._last_sync >= self.fsync_every_s:
            self._group_sync()

    def _group_sync(self) -> None:
        """The grouped fsync: on the background thread (per unit, ``fsync_every_s=0``: here)."""
        if self.fsync_every_s <= 0 or self._fd is None:
            self.sync()
            return
        if self._syncer is None:
            self._syncer = _Syncer(self._fd)
        error = self._syncer.request()
        if error is not None:
            raise self._error(error) from None
        # _dirty stays set: ``close`` fsyncs once more, whatever the thread got to
        self._last_sync = time.monotonic()

    def sync(self) -> None:
        """fsync what was appended since the last sync."""
        if self._fd is not None and self._dirty:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise self._error(exc) from None
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._syncer is not None:  # its last fsync done (or failed) before ours
            error, self._syncer = self._syncer.stop(), None
            if error is not None and self._fd is not None:
                os.close(self._fd)
                self._fd = None
                raise self._error(error) from None
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    def remove(self) -> None:
        """Close and delete the journal (every record of the sweep is final)."""
        self.close()
        self.path.unlink(missing_ok=True)


class _Syncer:
    """A daemon thread that fsyncs one descriptor when asked (the journal's group commit).

    ``request`` wakes it (a request while an fsync runs is folded into the next) and
    returns the error of an earlier fsync, if any; ``stop`` waits for the thread.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="knoblab-journal-fsync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                os.fsync(self.fd)
            except OSError as exc:
                self.error = exc
                return

    def request(self) -> OSError | None:
        self._wake.set()
        return self.error

    def stop(self) -> OSError | None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        return self.error
