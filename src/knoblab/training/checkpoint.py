"""Read, write and upgrade knoblab checkpoints and weight exports, safely.

Two files carry a model:

* a **training checkpoint** (``*.ckpt``, written by Lightning through
  ``AtomicCheckpointIO``): the full training state plus a ``knoblab`` block with the
  format version and the model description ``{kind, config}``;
* a **weights export** (``*.safetensors`` + a ``*.json`` sidecar with the same
  description), what the package ships (``reference-v2.safetensors``).

``load_model_from_checkpoint(path)`` reads either, in the current format or an older
one (upgraded in memory by ``knoblab.training.migrations`` with one ``FutureWarning``
naming ``knoblab upgrade-checkpoint``), and rebuilds the model. A newer or unknown
format, a missing file, or a checkpoint of another model is a one-line
``CheckpointError``.

NOTE: nothing here unpickles arbitrary objects: ``.ckpt`` files load with
``torch.load(weights_only=True)`` (tensors and plain containers only) and weights
exports are safetensors. Every write goes to a temporary file in the same folder,
is fsynced, then renamed over the target, so an interrupted run never leaves a
half-written checkpoint where the last good one was.

Usage (with a checkpoint of ``knoblab train``)::

    model = load_model_from_checkpoint("runs/ref/checkpoints/last.ckpt")
    upgrade_checkpoint("old.ckpt")  # writes old.ckpt.bak, then upgrades old.ckpt; returns 0
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from knoblab.atomic import atomic_write
from knoblab.errors import CheckpointError
from knoblab.models.weights_format import SUFFIX
from knoblab.training.migrations import CURRENT_FORMAT, migrate

WEIGHTS_SUFFIX = SUFFIX


# --- atomic writes --------------------------------------------------------------------------


def atomic_write_bytes(data: bytes, path: str | os.PathLike[str]) -> None:
    """Write ``data`` to ``path`` atomically (:func:`knoblab.atomic.atomic_write`)."""
    atomic_write(path, data)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` that never leaves a partial file at ``path``.

    The temporary file is ``.<name>.<pid>.tmp`` beside ``path`` (a dead writer's one is
    removed by :func:`knoblab.atomic.remove_stale_tmp` when the next run starts); a full
    disk is one line, ``disk full writing <path>; finished results are kept``.
    """
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: atomic writes, ``weights_only=True`` reads.

    Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``; ``knoblab train`` does.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = True
    ) -> dict[str, Any]:
        return _torch_load(Path(path), map_location or "cpu")


# --- reading --------------------------------------------------------------------------------


def _check_exists(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint={str(path)!r} is a directory: allowed is a .ckpt or .safetensors file"
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint={str(path)!r} is invalid: allowed is an existing .ckpt or .safetensors file (not found)"
        )


def _is_pickle(path: Path) -> bool:
    """True when ``path`` parses as one whole pickle stream (opcodes only; nothing is run)."""
    import pickletools

    try:
        with open(path, "rb") as fh:
            for _ in pickletools.genops(fh):
                pass
    except Exception:  # noqa: BLE001 - any parse failure: not a pickle
        return False
    return True


def _not_a_checkpoint(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint={str(path)!r} is not a checkpoint or is corrupt ({detail[:160]}): "
        "allowed is a .ckpt written by `knoblab train`"
    )


def _torch_load(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors that say what the file is.

    NOTE: torch's weights-only unpickler raises ``UnpicklingError`` both for a pickle
    that asks for arbitrary objects and for bytes that are no pickle at all; the two are
    told apart here (a zip archive or a well-formed pickle stream: unsafe objects;
    anything else: not a checkpoint), since "refusing to unpickle" a file of random bytes
    sends the user looking for an attack instead of a broken copy.
    """
    import zipfile

    _check_exists(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not (zipfile.is_zipfile(path) or _is_pickle(path)):
            raise _not_a_checkpoint(path, "neither a PyTorch archive nor a pickle") from None
        lines = [x for x in str(exc).splitlines() if "GLOBAL" in x or "Unsupported" in x]
        raise CheckpointError(
            f"checkpoint={str(path)!r} holds objects other than tensors and plain containers; "
            f"refusing to unpickle it ({(lines or [''])[0].strip()[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _not_a_checkpoint(path, first or type(exc).__name__) from None
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint={str(path)!r} is invalid: allowed is a checkpoint dict, got {type(obj).__name__}"
        )
    return obj


def _warn_upgraded(path: Path, old: int) -> None:
    warnings.warn(
        f"{path}: checkpoint format {old} is deprecated and was upgraded in memory to format "
        f"{CURRENT_FORMAT}; run `knoblab upgrade-checkpoint {path}` to upgrade the file",
        FutureWarning,
        stacklevel=3,
    )


def read_checkpoint(
    path: str | os.PathLike[str], map_location: Any = "cpu", warn: bool = True
) -> dict[str, Any]:
    """A training checkpoint as a dict in the current format (older formats upgraded in memory)."""
    p = Path(path)
    ckpt = _torch_load(p, map_location)
    ckpt, old = migrate(ckpt, source=str(p))
    if old < CURRENT_FORMAT and warn:
        _warn_upgraded(p, old)
    return ckpt


def model_description(
    ckpt: Mapping[str, Any], source: str = "checkpoint"
) -> tuple[str, dict[str, Any]]:
    """``(kind, config)`` of the model in a current-format checkpoint dict."""
    desc = (ckpt.get("knoblab") or {}).get("model") or {}
    kind = desc.get("kind")
    if not isinstance(kind, str):
        raise CheckpointError(
            f"{source}: knoblab.model.kind={kind!r} is invalid: allowed is a model family name"
        )
    return kind, dict(desc.get("config") or {})


def _check_kind(kind: str, expected_kind: str | None, source: str) -> None:
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(
            f"{source} is a checkpoint of another model: model.kind={kind!r}, allowed is {expected_kind!r}"
        )


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` with a one-line ``CheckpointError`` on any mismatch."""
    from knoblab._compat.safetensors import shared_tensor_groups

    own = model.state_dict()
    state = dict(state)
    # a weights export stores tied tensors once: give every name of a tied group the stored one
    for group in shared_tensor_groups(own):
        present = [n for n in sorted(group) if n in state]
        for n in group:
            if present and n not in state:
                state[n] = state[present[0]]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape:
            k = shape[0]
            parts.append(
                f"{len(shape)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise CheckpointError(
            f"{source} is a checkpoint of another model: weights {'; '.join(parts)}"
        )
    model.load_state_dict(state, strict=True)


def load_model_from_checkpoint(
    path: str | os.PathLike[str], expected_kind: str | None = None, map_location: Any = "cpu"
) -> nn.Module:
    """Rebuild the model stored in a training checkpoint or a weights export, weights loaded.

    Args:
        path: a ``.ckpt`` from ``knoblab train`` (any format version up to the current one)
            or a ``.safetensors`` export with its ``.json`` sidecar.
        expected_kind: when given, a checkpoint of another model family is an error.
        map_location: where tensors go (``"cpu"`` by default).

    Raises:
        CheckpointError: missing file, newer/unknown format, another model, unsafe pickle.
    """
    from knoblab.training.tasks import build_task

    p = Path(path)
    if p.suffix == WEIGHTS_SUFFIX:
        kind, config, state = read_weights(p)
    else:
        ckpt = read_checkpoint(p, map_location)
        kind, config = model_description(ckpt, str(p))
        sd = ckpt.get("state_dict") or {}
        state = {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
    _check_kind(kind, expected_kind, str(p))
    model = build_task(kind, config).model
    load_state_into(model, state, str(p))
    return model.eval()


# --- weights export (safetensors + JSON) ------------------------------------------------------


def save_weights(
    model: nn.Module,
    kind: str,
    config: Mapping[str, Any],
    path: str | os.PathLike[str],
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``model``'s weights in knoblab's one weights format (:mod:`knoblab.models.weights_format`).

    The sidecar holds ``format_version``, ``model = {kind, config}`` and ``extra``
    (provenance: recipe, seed, metrics). Tied weights are stored once.
    """
    from knoblab._compat.safetensors import duplicate_names
    from knoblab.models.weights_format import write_weights

    sd = model.state_dict()
    # safetensors refuses tensors that share memory (tied embeddings); keep one name per storage.
    dropped = duplicate_names(sd)
    return write_weights(
        path, {k: v for k, v in sd.items() if k not in dropped}, kind, config, extra
    )


def read_weights(
    path: str | os.PathLike[str],
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """``(kind, config, state_dict)`` of a weights file (tied weights restored by the model)."""
    from knoblab.models.weights_format import read_weights as read

    p = Path(path)
    _check_exists(p)
    f = read(p, key="weights")
    return f.kind, f.config, f.state


# --- in-place upgrade -----------------------------------------------------------------------


def upgrade_checkpoint(path: str | os.PathLike[str]) -> int:
    """Upgrade a ``.ckpt`` file in place to the current format; returns the version it had.

    Writes ``<path>.bak`` (a byte copy of the original) first, then the upgraded file
    atomically. A checkpoint already in the current format is left untouched (no ``.bak``).
    """
    p = Path(path)
    ckpt, old = migrate(_torch_load(p), str(p))  # in memory; validates the knoblab block
    if old == CURRENT_FORMAT:
        return old
    bak = p.with_name(p.name + ".bak")
    atomic_write(bak, lambda tmp: shutil.copy2(p, tmp))
    atomic_torch_save(ckpt, p)
    return old
