"""Typed validation of config sections against dataclass schemas.

Hydra composes the config; this module turns one section of it into a typed
dataclass and raises a one-line ``ConfigError`` naming the full key, the value and
what is allowed. Schemas are plain dataclasses whose ``__post_init__`` checks ranges.

Example:
    >>> from knoblab.sampling import SamplingConfig
    >>> to_dataclass({"num_epochs": 2}, SamplingConfig, "dataset.sampling")
    SamplingConfig(num_samples_per_epoch=None, num_epochs=2, randomize=False, seed=None)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from knoblab.errors import ConfigError, UnknownKeyError

T = TypeVar("T")


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
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
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
        raise ConfigError(prefix, data, f"a mapping of {schema.__name__} fields")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for k in data:
        if k not in fields:
            raise UnknownKeyError(f"{prefix}.{k}", data[k], fields)
    kwargs = {k: _coerce(f"{prefix}.{k}", v, hints[k]) for k, v in data.items()}
    try:
        return schema(**kwargs)
    except ConfigError as e:
        # __post_init__ names the bare field; give it its full path.
        if e.key in fields and not e.key.startswith(prefix + "."):
            raise ConfigError(f"{prefix}.{e.key}", e.value, e.allowed, e.hint) from None
        raise
