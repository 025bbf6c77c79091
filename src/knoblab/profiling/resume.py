"""What a sweep finds in its output directory, and what is left to measure.

:func:`resume_state` (rank 0 does the reading and writing; every rank gets the answer):
takes the directory's lock (held by the caller's ``ExitStack`` until the report is
written), refuses a directory of another sweep, removes stale temporary files, reads
the records (a damaged one is measured again, a foreign one refused), writes
``sweep.json`` (the identity plus every knob list and configuration asked for so far),
opens the tracking run (``run.logger``) and the journal (``profiling.journal``), and
returns which configurations are done (a record exists) and which plan positions of
the others the journal already holds.

Example: see ``tests/profiling/test_resume.py``.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from knoblab.errors import KnobLabError
from knoblab.profiling import records as rec
from knoblab.profiling.distributed import broadcast
from knoblab.profiling.identity import check_out_dir
from knoblab.profiling.journal import Journal
from knoblab.profiling.lock import out_dir_lock
from knoblab.profiling.prepare import SweepSetup
from knoblab.profiling.tracking import SweepTracking, open_tracking


@dataclass
class ResumeState:
    """The directory's state at the start of a run.

    Attributes:
        done: ``{config key: record file}`` of configurations not measured again.
        previous: ``{config key: record file}`` of every record there (a retried
            configuration's old file is replaced).
        journaled: ``{config key: set of plan positions}`` the journal holds (every rank).
        journal: the open journal (rank 0; None elsewhere).
        tracking: the tracking run (rank 0; inert elsewhere).
        damaged: record files that were not readable JSON (measured again).
    """

    done: dict[str, str] = field(default_factory=dict)
    previous: dict[str, str] = field(default_factory=dict)
    journaled: dict[str, set[int]] = field(default_factory=dict)
    journal: Journal | None = None
    tracking: SweepTracking = field(default_factory=SweepTracking)
    damaged: list[str] = field(default_factory=list)

    def todo(self, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in configs if rec.config_key(c) not in self.done]

    def skipped(self, configs: list[dict[str, Any]]) -> list[str]:
        return [self.done[rec.config_key(c)] for c in configs if rec.config_key(c) in self.done]


def _read_directory(s: SweepSetup, state: ResumeState, locks: ExitStack) -> None:
    """Rank 0: lock, check, read records, write sweep.json, open tracking and journal."""
    out_dir = s.out_dir
    locks.enter_context(out_dir_lock(out_dir))  # until the report is written
    old = check_out_dir(out_dir, s.identity)
    rec.remove_stale_tmp(out_dir)
    existing = rec.load_records(out_dir, strict=True, unreadable=state.damaged)
    for fname, r in existing.items():
        if old is not None:  # a record of another sweep is refused, never merged
            rec.check_belongs(r, old, str(out_dir / fname))
        key = rec.config_key(r.get("knobs") or {})
        state.previous[key] = fname
        if s.run.retry_failed and r.get("status") != "ok":
            continue
        state.done[key] = fname
    asked = list((old or {}).get("configurations") or [])
    asked += [c for c in s.configs if c not in asked]
    lists_seen = list((old or {}).get("knob_lists") or [])
    if s.lists and s.lists not in lists_seen:
        lists_seen.append(s.lists)
    rec.write_sweep(
        out_dir,
        {
            "identity": s.identity,
            "knob_lists": lists_seen,
            "design": s.design.__dict__,
            "configurations": asked,
            "percentiles": list(s.run.percentiles),
        },
    )
    state.tracking = open_tracking(s.data, out_dir, s.environment)
    # Rows of a configuration with a record are stale: its record is final.
    journal = Journal.open(
        out_dir, keep=lambda key: key not in state.previous, fsync_every_s=s.run.journal_fsync_s
    )
    locks.callback(journal.close)
    state.journal = journal
    state.journaled = {k: set(rows) for k, rows in journal.state.rows.items()}


def resume_state(s: SweepSetup, locks: ExitStack) -> ResumeState:
    """Read the directory on rank 0 (see the module docstring); broadcast the answer.

    Raises:
        KnobLabError: the directory holds another sweep, a foreign or mistyped record, or
            is locked by a running sweep (the same error on every rank).
    """
    state = ResumeState()
    decision: Any = None
    if s.rank == 0:
        try:
            _read_directory(s, state, locks)
            decision = {"done": state.done, "journaled": state.journaled}
        except KnobLabError as exc:
            decision = exc
    decision = broadcast(decision, s.world)
    if isinstance(decision, Exception):
        raise decision
    if s.rank != 0:
        state.done, state.journaled = decision["done"], decision["journaled"]
    return state
