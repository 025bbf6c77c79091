"""An exclusive lock on a sweep's output directory, held for the sweep's duration.

Two sweeps writing into one directory would mix their records (both pass the identity
check when started together). :func:`out_dir_lock` takes ``fcntl.flock`` on
``<out_dir>/.knoblab.lock`` and writes the holder (PID, host, start time, command) into
it; a second sweep into the directory gets one line naming the holder
(:class:`knoblab.errors.DataError`, exit 2) and writes nothing.

NOTE: the kernel releases a ``flock`` when its holder dies (SIGKILL, OOM kill, power
loss of the process), so a lock file left by a dead process is never stale: the next
sweep takes the lock and overwrites the holder line. NFS emulates ``flock`` with
byte-range locks on recent Linux (works across clients since 2.6.12); on a filesystem
without locks (``ENOLCK``) the sweep runs unlocked with a warning.

Under ``torchrun`` only rank 0 takes the lock (it alone writes files); the other ranks
learn of a refusal through the runner's broadcast of rank 0's decision.

Example:
    >>> import tempfile
    >>> with out_dir_lock(tempfile.mkdtemp()) as holder:
    ...     holder["pid"] > 0
    True
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from knoblab.atomic import ensure_dir
from knoblab.errors import DataError

LOCK_NAME = ".knoblab.lock"


def _holder_text(fd: int) -> dict[str, Any]:
    """The holder recorded in the lock file; waits briefly for a holder still writing it."""
    for _ in range(20):
        raw = os.pread(fd, 4096, 0)
        try:
            data = json.loads(raw.decode("utf-8"))
            if isinstance(data, dict):
                return data
        except ValueError:
            pass
        time.sleep(0.05)  # the holder took the lock a moment ago and writes its line now
    return {}


def describe_holder(holder: dict[str, Any]) -> str:
    """``PID 123 on host, started 2026-12-02T01:02:03Z, command 'knoblab profile'``."""
    if not holder:
        return "a process that has not recorded itself yet"
    return (
        f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
        f"{holder.get('started', '?')}, command {holder.get('command', '?')!r}"
    )


def _command_line() -> str:
    """This process's command line, as the user typed it (``knoblab profile ...``)."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if prog in ("cli.py", "__main__.py", "-m", "-c"):
        prog = "knoblab" if prog in ("cli.py", "__main__.py") else "python"
    return " ".join([prog, *sys.argv[1:]])


@contextlib.contextmanager
def out_dir_lock(
    out_dir: str | os.PathLike[str], command: str | None = None
) -> Iterator[dict[str, Any]]:
    """Hold the exclusive lock of ``out_dir`` (created) for the ``with`` block.

    Yields the holder record written into the lock file.

    Raises:
        DataError: another live process holds the lock (the message names it), or
            ``out_dir`` is a file.
    """
    folder = ensure_dir(out_dir, "run.output_dir")
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(fd)
            raise DataError(
                f"output directory {str(folder)!r} is in use by another sweep "
                f"({describe_holder(holder)}): wait for it to finish or set another "
                "run.output_dir"
            ) from None
        except OSError as exc:
            if exc.errno != errno.ENOLCK:
                raise
            warnings.warn(
                f"{folder}: the filesystem has no file locks; two sweeps into it would mix",
                stacklevel=3,
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command or _command_line(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        yield holder
    finally:
        os.close(fd)  # closing the descriptor releases the flock
