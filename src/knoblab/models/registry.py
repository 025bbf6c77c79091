"""Build a model adapter from its config section (``cfg.model``), by its ``kind`` key.

Each kind is a ``build(cfg: dict) -> ModelAdapter`` function, imported only when used:
a key of ``KINDS``, or an import path ``pkg.module:build_adapter`` of your own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from knoblab._lazy import load_object
from knoblab.config import plain
from knoblab.errors import ConfigError
from knoblab.models.adapter import ModelAdapter

KINDS: dict[str, str] = {
    "reference": "knoblab.models.reference.adapter:build",
    "hf": "knoblab.models.hf:build",
}


def merged_model_config(
    cfg: Mapping[str, Any] | None, hardware: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The model section with the hardware preset merged under it: what an adapter's build gets.

    A model key wins over the preset's key of the same name unless it is null: null
    means "unset", so ``model.device: null`` runs on ``hardware.device``.

    Example:
        >>> merged_model_config({"kind": "reference", "device": None}, {"device": "cuda"})["device"]
        'cuda'
    """
    model = {k: v for k, v in dict(plain(cfg) or {}).items()}
    hw = dict(plain(hardware) or {})
    return {**hw, **{k: v for k, v in model.items() if v is not None or k not in hw}}


def check_device(device: Any, key: str = "model.device") -> str:
    """``device`` as a string, checked against this torch and this machine.

    Raises:
        ConfigError: not a torch device string, or a CUDA device where torch has no
            CUDA build or sees no (or too few) GPUs. ``key`` is the config key named.

    Example:
        >>> check_device("cpu")
        'cpu'
    """
    import torch

    text = str(device)
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(key, device, "cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise ConfigError(key, device, "cpu: this torch has no CUDA")
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(key, device, "cpu: no CUDA device is visible here")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(key, device, f"cpu, cuda or cuda:0..cuda:{n - 1}")
    return text


def build_adapter(
    cfg: Mapping[str, Any], hardware: Mapping[str, Any] | None = None
) -> ModelAdapter:
    """The adapter described by ``cfg`` (``kind`` picks the family; default ``reference``).

    ``hardware`` (``cfg.hardware``: device, dtype, attention implementation, memory
    savings) is merged under the model's own keys, which win unless null
    (:func:`merged_model_config`). A CUDA device this machine cannot run is a
    ``ConfigError`` naming ``model.device`` or ``hardware.device`` (where it came from).
    """
    data = merged_model_config(cfg, hardware)
    kind = data.get("kind", "reference")
    build = builder(kind)
    if data.get("device") is not None and not data.get("device_map"):
        model_device = dict(plain(cfg) or {}).get("device")
        check_device(
            data["device"], "model.device" if model_device is not None else "hardware.device"
        )
    adapter = build(data)
    if kind not in KINDS and not isinstance(adapter, ModelAdapter):
        raise ConfigError(
            "model.kind",
            kind,
            "a callable returning a ModelAdapter (knoblab.models.adapter)",
            f"it returned a {type(adapter).__name__}",
        )
    return adapter


def builder(kind: Any) -> Callable[[dict[str, Any]], Any]:
    """The build function of ``kind``: a key of :data:`KINDS`, or an import path ``pkg.module:attr``.

    An import path lets an adapter of your own run from the plain CLI
    (``knoblab profile model.kind=my_pkg.adapter:build``): the callable receives the
    ``model`` section (hardware preset merged under it) and returns a ``ModelAdapter``.

    Raises:
        ConfigError: not a kind, or an import path that does not import or is not callable.

    Example:
        >>> builder("reference").__name__
        'build'
    """
    allowed = f"one of {', '.join(KINDS)}, or an import path pkg.module:build_adapter"
    if isinstance(kind, str) and kind in KINDS:
        return load_object(KINDS[kind])
    if not isinstance(kind, str) or kind.count(":") != 1 or not all(kind.split(":")):
        raise ConfigError("model.kind", kind, allowed)
    module, _, attr = kind.partition(":")
    try:
        obj = load_object(kind)
    except ImportError as exc:
        raise ConfigError("model.kind", kind, allowed, f"cannot import {module}: {exc}") from None
    except AttributeError:
        raise ConfigError("model.kind", kind, allowed, f"{module} has no {attr}") from None
    if not callable(obj):
        raise ConfigError("model.kind", kind, allowed, f"{attr} is not callable")
    return obj
