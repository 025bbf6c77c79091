"""Errors users see. Every message is one line that names the key, the value and what is allowed.

The CLI prints ``KnobLabError`` messages without a traceback and exits with code 2
(``--debug`` or ``HYDRA_FULL_ERROR=1`` shows the traceback).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class KnobLabError(Exception):
    """Base class for errors caused by user input (config, data, files)."""


class ConfigError(KnobLabError, ValueError):
    """A configuration value is invalid.

    Example:
        >>> raise ConfigError("dataset.sampling.num_epochs", 0, "an integer >= 1")
        Traceback (most recent call last):
        ...
        knoblab.errors.ConfigError: dataset.sampling.num_epochs=0 is invalid: allowed is an integer >= 1
    """

    def __init__(self, key: str, value: Any, allowed: str, hint: str | None = None):
        self.key, self.value, self.allowed, self.hint = key, value, allowed, hint
        msg = f"{key}={value!r} is invalid: allowed is {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class UnknownKeyError(ConfigError):
    """A key that the schema does not know; suggests the closest valid key."""

    def __init__(self, key: str, value: Any, valid: Iterable[str]):
        valid = sorted(valid)
        leaf = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
        prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
        hint = f"did you mean {prefix}{close[0]}?" if close else None
        KnobLabError.__init__(self)
        self.key, self.value, self.allowed, self.hint = key, value, ", ".join(valid), hint
        msg = f"unknown key {key}={value!r}: allowed keys are {', '.join(valid)}"
        if hint:
            msg += f"; {hint}"
        self.args = (msg,)


class DataError(KnobLabError):
    """A dataset, sample or file cannot be used (empty dataset, corrupt image, ...)."""


class CheckpointError(KnobLabError):
    """A checkpoint is missing, of another model, or of an unknown format version."""


@dataclass(frozen=True)
class Skipped:
    """One input left out, where it is and why: the soft counterpart of a ``DataError``.

    A loader that keeps going past a bad record (a dataset's malformed line, a sweep's
    foreign record file) collects these and reports them once.

    Attributes:
        where: ``file:line`` of a dataset record, or a record file's name in a sweep.
        reason: why it was left out (one line).

    Example:
        >>> str(Skipped("data.jsonl:3", "no image"))
        'data.jsonl:3: no image'
    """

    where: str
    reason: str

    @property
    def name(self) -> str:
        """``where``, under the name the analysis report uses for a record file."""
        return self.where

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The closest valid name to ``name``, or None when nothing is close."""
    m = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return m[0] if m else None
