"""Build a model adapter from its config section (``cfg.model``), by its ``kind`` key.

Each kind is a ``build(cfg: dict) -> ModelAdapter`` function, imported only when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knoblab._lazy import load_object
from knoblab.config import plain
from knoblab.errors import ConfigError
from knoblab.models.adapter import ModelAdapter

KINDS: dict[str, str] = {
    "reference": "knoblab.models.reference.adapter:build",
    "hf": "knoblab.models.hf:build",
}


def build_adapter(
    cfg: Mapping[str, Any], hardware: Mapping[str, Any] | None = None
) -> ModelAdapter:
    """The adapter described by ``cfg`` (``kind`` picks the family; default ``reference``).

    ``hardware`` (``cfg.hardware``: device, dtype, attention implementation, memory
    savings) is merged under the model's own keys, which win.
    """
    data = {**(dict(plain(hardware) or {})), **dict(plain(cfg) or {})}
    kind = data.get("kind", "reference")
    if kind not in KINDS:
        raise ConfigError("model.kind", kind, f"one of {', '.join(KINDS)}")
    return load_object(KINDS[kind])(data)
