"""One way to write a file so that a crash never leaves it half-written.

``atomic_write(path, data)`` writes to ``.<name>.<pid>.tmp`` in the same folder, fsyncs
it, renames it over ``path`` (``os.replace``, atomic on POSIX) and fsyncs the folder so
the rename itself survives a power loss. A disk-full error becomes one line naming the
path (:class:`knoblab.errors.DataError`), the temporary file is removed, and whatever
``path`` held before is untouched.

NOTE: the temporary name carries the writer's PID so that a later run can tell files of
dead writers (safe to delete) from those of live ones (:func:`remove_stale_tmp`).

Example:
    >>> import tempfile, pathlib
    >>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "a.txt", "hello")
    >>> p.read_text()
    'hello'
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from knoblab.errors import DataError

_TMP = re.compile(r"^\..+\.(\d+)\.tmp$")


def tmp_path(path: str | os.PathLike[str]) -> Path:
    """The temporary file :func:`atomic_write` uses for ``path`` in this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def ensure_dir(path: str | os.PathLike[str], key: str = "output directory") -> Path:
    """Create the folder ``path`` (and parents); a one-line error when a file is in the way."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(
            f"{key}={str(path)!r} is a file (or lies under one): allowed is a directory"
        ) from None
    except PermissionError:
        raise DataError(f"{key}={str(path)!r} is not writable: permission denied") from None
    if not path.is_dir():
        raise DataError(f"{key}={str(path)!r} is a file: allowed is a directory")
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[Path], object],
    *,
    durable: bool = True,
) -> Path:
    """Write ``data`` to ``path`` atomically and durably; return ``path``.

    ``data`` is bytes, text (written as UTF-8), or a callable that writes the file it is
    given (e.g. ``lambda p: df.to_parquet(p)`` or ``lambda p: torch.save(obj, p)``).
    ``durable=False`` leaves out the two fsyncs: the write is still atomic (a killed
    process leaves the old file or the new one), but only a later :func:`sync_files`
    makes it survive a power loss. For a caller whose data something else keeps durably
    meanwhile (the sweep's journal backs its records until they are synced).

    Raises:
        DataError: the disk is full (``"disk full writing <path>; finished results are
            kept"``), or the folder is a file.
    """
    path = Path(path)
    ensure_dir(path.parent)
    tmp = tmp_path(path)
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"disk full writing {path}; finished results are kept") from None
        raise
    if durable:
        _fsync_dir(path.parent)
    return path


def sync_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """fsync each file of ``paths`` that exists, then each of their folders once (what
    ``atomic_write(..., durable=False)`` left out)."""
    folders: dict[Path, None] = {}
    for p in map(Path, paths):
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:  # replaced or removed since (a retried configuration)
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders[p.parent] = None
    for folder in folders:
        _fsync_dir(folder)


def remove_stale_tmp(folder: str | os.PathLike[str], recursive: bool = False) -> list[str]:
    """Delete ``.<name>.<pid>.tmp`` files of writers that are no longer running.

    NOTE: a temporary file of a live process (another rank, another sweep) is kept;
    removing it would make that writer's ``os.replace`` fail.
    """
    removed: list[str] = []
    d = Path(folder)
    if not d.is_dir():
        return removed
    for tmp in d.rglob(".*.tmp") if recursive else d.glob(".*.tmp"):
        m = _TMP.match(tmp.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(str(tmp.relative_to(d)))
    return removed


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (ours, or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours
        return True
    return True
