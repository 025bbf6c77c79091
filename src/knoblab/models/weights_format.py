"""The one weights file format of knoblab: ``<stem>.safetensors`` + a ``<stem>.json`` sidecar.

Written by ``knoblab train``'s export (``train.export``), by the reference model's
``save_reference`` and so by the shipped reference weights; read by
``knoblab.models.reference.load_reference`` and ``training.load_model_from_checkpoint``.

* ``<stem>.safetensors``: the tensors (one name per shared storage: tied weights are
  stored once and the reader's model ties them back), metadata
  ``{"format_version": "2"}`` (one key: safetensors writes its metadata map in a
  random order, so two keys made two saves of the same tensors differ in bytes).
* ``<stem>.json``: ``{"format_version": 2, "model": {"kind": kind, "config": {...}}, ...}``
  where the config rebuilds the model (``training.tasks.build_task(kind, config)``) and
  any further keys are provenance (seed, metrics, the train config).

NOTE: the reference model's first exports (before one format) wrote a sidecar that is
the bare architecture (``ReferenceConfig.to_dict()``, no ``format_version``) and
metadata ``{"format": "knoblab-reference"}``; they are read as kind ``reference`` with
config ``{"arch": <sidecar>}``. Nothing writes that layout any more.

Example:
    >>> import torch
    >>> st, _ = write_weights(tmp_path / "w.safetensors", {"w": torch.ones(2)}, "toy", {"n": 2})
    >>> f = read_weights(st)
    >>> (f.kind, f.config, f.state["w"].tolist())
    ('toy', {'n': 2}, [1.0, 1.0])
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from knoblab.atomic import atomic_write
from knoblab.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "SUFFIX",
    "WeightsFile",
    "read_weights",
    "sidecar_path",
    "write_weights",
]

#: The sidecar layout written now (the number of the checkpoints' ``knoblab`` block too).
FORMAT_VERSION = 2
SUFFIX = ".safetensors"
#: The metadata ``format`` of the reference model's first exports (read only).
LEGACY_REFERENCE = "knoblab-reference"


@dataclass(frozen=True)
class WeightsFile:
    """What a weights file holds.

    Attributes:
        kind: the model family (``reference``, ``toy``, ...).
        config: the family's config, enough to rebuild the model.
        state: the stored tensors (tied weights once).
        description: the whole sidecar (provenance keys included).
    """

    kind: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    description: dict[str, Any] = field(default_factory=dict)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The ``.json`` that sits beside a ``.safetensors`` file (same stem)."""
    return Path(path).with_suffix(".json")


def write_weights(
    path: str | os.PathLike[str],
    state: Mapping[str, torch.Tensor],
    kind: str,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``path`` and its sidecar, each atomically; returns both paths.

    ``state`` must hold one name per storage (safetensors refuses shared tensors).
    """
    from safetensors.torch import save

    p = Path(path)
    if p.suffix != SUFFIX:
        raise CheckpointError(
            f"weights path={str(p)!r} is invalid: allowed is a file name ending in {SUFFIX}"
        )
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    # One key only: safetensors writes the metadata map in a random order (a Rust
    # HashMap); with two keys, equal tensors gave files of different bytes and hashes.
    meta = {"format_version": str(FORMAT_VERSION)}
    atomic_write(p, save(tensors, metadata=meta))
    desc = {
        **dict(extra or {}),
        "format_version": FORMAT_VERSION,
        "model": {"kind": kind, "config": dict(config)},
    }
    side = sidecar_path(p)
    atomic_write(side, json.dumps(desc, indent=2, sort_keys=True, default=str) + "\n")
    return p, side


def read_weights(
    path: str | os.PathLike[str], key: str = "weights", legacy_kind: str | None = None
) -> WeightsFile:
    """Read a weights file and its sidecar; one-line ``CheckpointError`` naming ``key`` on any fault.

    Args:
        path: the ``.safetensors`` file.
        key: the config key that named it, for messages (``model.weights``).
        legacy_kind: a sidecar without ``format_version`` (or none at all) is this
            family's first layout, the bare architecture: ``{"arch": <sidecar>}``.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{key}={str(p)!r} is a directory: allowed is a {SUFFIX} file")
    if not p.is_file():
        raise CheckpointError(f"{key}={str(p)!r} does not exist: allowed is a {SUFFIX} file")
    try:
        state = load_file(str(p))
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(
            f"{key}={str(p)!r} is not a readable {SUFFIX} file ({reason}): "
            f"allowed is a {SUFFIX} file with its .json sidecar"
        ) from None
    desc = _read_sidecar(p, key, required=legacy_kind is None)
    if "format_version" not in desc:
        kind = "reference" if meta.get("format") == LEGACY_REFERENCE else legacy_kind
        if kind is not None:
            return WeightsFile(kind, {"arch": desc}, state, desc)
    version = desc.get("format_version")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 2 <= version <= FORMAT_VERSION
    ):
        raise CheckpointError(
            f"{sidecar_path(p)}: format_version={version!r} is invalid: "
            f"allowed is 2..{FORMAT_VERSION}"
        )
    model = desc.get("model")
    kind = model.get("kind") if isinstance(model, dict) else None
    config = model.get("config", {}) if isinstance(model, dict) else None
    if not isinstance(kind, str) or not isinstance(config, dict):
        raise CheckpointError(
            f"{sidecar_path(p)}: model={model!r} is invalid: allowed is "
            '{"kind": <model family>, "config": {...}}'
        )
    return WeightsFile(kind, dict(config), state, desc)


def _read_sidecar(path: Path, key: str, required: bool) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        if required:
            raise CheckpointError(
                f"{key}={str(path)!r} has no sidecar {side.name}: "
                f"allowed is a {SUFFIX} + .json pair"
            )
        return {}
    try:
        desc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{key}: sidecar {str(side)!r} cannot be read: {exc}") from None
    if not isinstance(desc, dict):
        raise CheckpointError(f"{side}: a {type(desc).__name__}, allowed is a JSON object")
    return desc
