"""What knoblab relies on in Hydra (and OmegaConf) beyond their documented API.

* ``OverridesParser`` (``hydra.core.override_parser``): Hydra's own parser of command-line
  overrides, undocumented as an API. knoblab uses it to read a sweep's first point, the
  keys a ``-m`` sweep varies, and the value a dict-valued override gives a nested key.
* The *text* of Hydra's and OmegaConf's composition errors: Hydra raises one exception
  type for an unknown key, an unknown group option and a bad override, so the key and
  the options are read from the message to write knoblab's one-line ``ConfigError``.
* ``hydra.main`` resolving ``config_path`` against the decorated function's
  ``__module__``: the CLI's ``-m`` sweeps run a function defined at run time, whose module
  is set to one inside the ``knoblab`` package so ``config_path="conf"`` finds the
  package's configs.

Each has a test in ``tests/_compat/test_hydra.py`` that runs the real Hydra: a release
that moves the parser, rewords an error or changes the lookup fails there by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "group_option_missing",
    "main_in_module",
    "override_key_and_value",
    "struct_miss_key",
    "sweep_first_point",
    "swept_keys",
    "unknown_override_key",
]


def _parser() -> Any:
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
    except ImportError as exc:  # pragma: no cover - only on a Hydra that moved it
        raise RuntimeError(
            "hydra.core.override_parser.overrides_parser.OverridesParser is gone: "
            "update knoblab._compat.hydra"
        ) from exc
    return OverridesParser.create()


def override_key_and_value(override: str) -> tuple[str, Any]:
    """``(key or group, parsed value)`` of one override (``a.b={x: 1}`` -> ``("a.b", {"x": 1})``).

    Raises Hydra's ``OverrideParseException`` (a ``HydraException``) on bad syntax.
    """
    parsed = _parser().parse_overrides([override])[0]
    return parsed.key_or_group, parsed.value()


def sweep_first_point(override: str) -> str | None:
    """``key=<first value>`` of a sweep override (``a=1,2`` -> ``a=1``); None when not a sweep.

    Raises Hydra's ``HydraException`` on bad syntax, and whatever Hydra raises for a sweep
    without an enumerable first value (``interval(...)``): the caller leaves those to Hydra.
    """
    parsed = _parser().parse_override(override)
    if not parsed.is_sweep_override():
        return None
    first = next(iter(parsed.sweep_string_iterator()))
    return f"{parsed.get_key_element()}={first}"


def swept_keys(overrides: Sequence[str]) -> set[str]:
    """The keys a ``-m`` sweep varies (``a=1,2``, ``range(..)``, ``choice(..)``, ...)."""
    parsed = _parser().parse_overrides(list(overrides))
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def struct_miss_key(exc: BaseException | None) -> str | None:
    """The full key of an OmegaConf "Key ... is not in struct" failure in ``exc``'s chain."""
    from omegaconf.errors import OmegaConfBaseException

    while exc is not None:
        if isinstance(exc, OmegaConfBaseException) and "not in struct" in str(exc):
            return getattr(exc, "full_key", None) or None
        exc = exc.__cause__
    return None


def unknown_override_key(message: str) -> str | None:
    """The key of Hydra's "Could not override 'key'" (an override of a key that is not there)."""
    m = re.search(r"Could not override '([^']+)'", message) or re.search(
        r"Key '([^']+)' (?:is not in struct|not in)", message
    )
    return m.group(1) if m and "override" in message else None


def group_option_missing(message: str) -> tuple[str, list[str] | None] | None:
    """``("group/option", [available options] or None)`` of Hydra's "Could not find 'group/option'".

    Hydra 1.3 writes "Available options in 'group':" then one option per line.
    """
    m = re.search(r"Could not find '([^']+)'", message)
    if m is None:
        return None
    avail = re.search(
        r"Available options(?: in '[^']*')?:\s*(.*?)(?:\nConfig search path|$)", message, re.S
    )
    options = [x.strip() for x in avail.group(1).split() if x.strip()] if avail else None
    return m.group(1), options


def main_in_module(
    task: Callable[[Any], Any], module: str, config_path: str, config_name: str
) -> Callable[[], Any]:
    """``hydra.main(config_path, config_name)(task)`` with ``config_path`` relative to ``module``.

    Why: ``hydra.main`` finds ``config_path`` next to the module that defines the task
    function (its ``__module__``); knoblab's task functions are made at run time, so the
    module is set to one inside the package whose folder holds ``config_path``.
    """
    import hydra

    task.__module__ = module
    return hydra.main(version_base=None, config_path=config_path, config_name=config_name)(task)
