"""Typed validation of config sections against dataclass schemas.

Hydra composes the config; this module turns one section of it into a typed
dataclass and raises a one-line ``ConfigError`` naming the full key, the value and
what is allowed. Schemas are plain dataclasses with one docstring per field; a range is
declared on the field (``Annotated[int, Range(1)]``) or checked in ``__post_init__``
with :func:`check_int` / :func:`check_number`, the one integer/number checker of knoblab.

Example:
    >>> from knoblab.sampling import SamplingConfig
    >>> to_dataclass({"num_epochs": 2}, SamplingConfig, "dataset.sampling")
    SamplingConfig(num_samples_per_epoch=None, num_epochs=2, randomize=False, seed=None)
    >>> check_int("train.batch_size", 0, minimum=1)
    Traceback (most recent call last):
    ...
    knoblab.errors.ConfigError: train.batch_size=0 is invalid: allowed is an integer >= 1
    >>> check_number("train.datasets.a.weight", 0.5, greater_than=0)
    0.5
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from knoblab.errors import ConfigError, UnknownKeyError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """A field's allowed range, checked by :func:`to_dataclass`: ``Annotated[int, Range(1)]``.

    Attributes:
        minimum: smallest allowed value (inclusive), or None.
        maximum: largest allowed value (inclusive), or None.
        greater_than: the value must be above this (exclusive), or None.
    """

    minimum: float | None = None
    maximum: float | None = None
    greater_than: float | None = None


def _bounds(minimum: float | None, maximum: float | None, greater_than: float | None) -> str:
    parts = []
    if greater_than is not None:
        parts.append(f"> {greater_than:g}")
    if minimum is not None and maximum is not None:
        return f"in {minimum:g}..{maximum:g}"
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    return " and ".join(parts)


def check_int(
    key: str,
    value: Any,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    allow_none: bool = False,
    none_means: str = "",
    hint: str | None = None,
) -> Any:
    """``value`` when it is an integer (not a bool) in ``minimum..maximum``; else a ``ConfigError``.

    ``allow_none``: null is allowed too (``none_means`` says what it means, for the message).
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        allowed = " ".join(x for x in ("an integer", _bounds(minimum, maximum, None)) if x)
        if allow_none:
            allowed += f" or null{f' ({none_means})' if none_means else ''}"
        raise ConfigError(key, value, allowed, hint)
    return value


def check_number(
    key: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    greater_than: float | None = None,
    allow_none: bool = False,
) -> Any:
    """``value`` when it is a finite number (not a bool) within the bounds; else a ``ConfigError``."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = (
        ok
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
        and (greater_than is None or value > greater_than)
    )
    if not ok:
        bounds = _bounds(minimum, maximum, greater_than)
        allowed = " ".join(x for x in ("a number", bounds) if x) + (
            " or null" if allow_none else ""
        )
        raise ConfigError(key, value, allowed)
    return value


def plain(obj: Any) -> Any:
    """OmegaConf containers -> plain Python containers (resolved); anything else as is."""
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true/false"
    if typing.get_origin(tp) is Annotated:
        return _describe(typing.get_args(tp)[0])
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; allow int -> float, nothing lossy."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        ranges = [r for r in meta if isinstance(r, Range)]
        try:
            value = _coerce(key, value, base)
        except ConfigError as exc:  # the wrong type: say the range too
            bounds = " ".join(_bounds(r.minimum, r.maximum, r.greater_than) for r in ranges)
            raise ConfigError(key, value, f"{exc.allowed} {bounds}".strip()) from None
        for r in ranges:
            if value is not None:
                if (
                    isinstance(value, int)
                    and not isinstance(value, bool)
                    and r.greater_than is None
                ):
                    check_int(key, value, r.minimum, r.maximum)  # type: ignore[arg-type]
                else:
                    check_number(
                        key,
                        value,
                        minimum=r.minimum,
                        maximum=r.maximum,
                        greater_than=r.greater_than,
                    )
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        nullable = type(None) in args
        if value is None and nullable:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # X | None: X's own message (a nested key's, a range), "or null"
            try:
                return _coerce(key, value, others[0])
            except ConfigError as exc:
                if nullable and exc.key == key:
                    raise ConfigError(key, value, exc.allowed + " or null", exc.hint) from None
                raise
        for arg in others:
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                continue
        raise ConfigError(key, value, _describe(tp))
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(key, value, "null")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, value, "true/false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, value, "an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, value, "a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, value, "a string")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, _describe(tp))
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        out = [_coerce(f"{key}[{i}]", v, arg) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "a mapping")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is not Any:
            return {k: _coerce(f"{key}.{k}", v, args[1]) for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return to_dataclass(value, tp, key)
    return value


def to_dataclass(section: Mapping[str, Any] | DictConfig | None, schema: type[T], prefix: str) -> T:
    """Validate ``section`` against the dataclass ``schema``; ``prefix`` names it in errors.

    Unknown keys raise ``UnknownKeyError`` suggesting the closest valid key; wrong
    types raise ``ConfigError``; the schema's ``__post_init__`` checks ranges.
    """
    data = plain(section) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or "config", data, f"a mapping of {schema.__name__} fields")
    hints = typing.get_type_hints(schema, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}

    def full(k: str) -> str:
        return f"{prefix}.{k}" if prefix else k

    for k in data:
        if k not in fields:
            raise UnknownKeyError(full(k), data[k], fields)
    kwargs = {k: _coerce(full(k), v, hints[k]) for k, v in data.items()}
    try:
        return schema(**kwargs)
    except ConfigError as e:
        # __post_init__ names the bare field; give it its full path.
        if prefix and e.key in fields and not e.key.startswith(prefix + "."):
            raise ConfigError(full(e.key), e.value, e.allowed, e.hint) from None
        raise
