"""Checkpoint format versions and the small functions that upgrade one version to the next.

Every checkpoint knoblab writes carries ``checkpoint["knoblab"]["format_version"]``.
``MIGRATIONS[v]`` turns a version-``v`` checkpoint dict into version ``v + 1``, in
place. Each migration is small, names why it exists, and is idempotent (running it
on an already-migrated dict changes nothing), like Lightning's own
``lightning.pytorch.utilities.migration``. Tests build a fixture of every old format
(``tests/training/old_formats.py``) and check that it loads.

Formats:

* **0** — written by the training script before knoblab had a format version (the
  layout of seed 004's ``train_ddp_multidataset.py``): no ``knoblab`` block; the
  model family and config sat in ``hyper_parameters`` as ``model_kind`` /
  ``model_config``; the LightningModule held the network as ``net``, so weights are
  ``net.*`` in ``state_dict``.
* **1** — the ``knoblab`` block appears, with ``format_version``, ``model_kind`` and
  ``model_config``; the network attribute is ``model`` (weights ``model.*``).
* **2** (current) — the model is described by one nested mapping
  ``knoblab.model = {kind, config}``, the same mapping the safetensors weights export
  writes into its JSON sidecar, so a checkpoint and an export are read by one code path.

To add a format: bump ``CURRENT_FORMAT``, add ``MIGRATIONS[CURRENT_FORMAT - 1]`` with a
docstring saying why, and a fixture for the old format in the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knoblab.errors import CheckpointError

CURRENT_FORMAT = 2
Checkpoint = dict[str, Any]


def format_version(ckpt: Checkpoint, source: str = "checkpoint") -> int:
    """The format version of a checkpoint dict (0 for the pre-versioning layout)."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{source} is invalid: allowed is a checkpoint dict, got {type(ckpt).__name__}"
        )
    block = ckpt.get("knoblab")
    if block is not None and not isinstance(block, dict):
        raise CheckpointError(
            f"{source}: knoblab={_short(block)} is invalid: allowed is a mapping "
            "{format_version, model} (the file is damaged or not written by `knoblab train`)"
        )
    if isinstance(block, dict) and "format_version" in block:
        v = block["format_version"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckpointError(
                f"{source}: knoblab.format_version={v!r} is invalid: allowed is an integer 0..{CURRENT_FORMAT}"
            )
        return v
    hp = ckpt.get("hyper_parameters")
    if isinstance(hp, dict) and "model_kind" in hp:
        return 0
    raise CheckpointError(
        f"{source} is not a knoblab checkpoint: no 'knoblab' block and no legacy "
        "hyper_parameters.model_kind; allowed are checkpoints written by `knoblab train`"
    )


def v0_to_v1(ckpt: Checkpoint) -> Checkpoint:
    """0 -> 1: give the checkpoint a format version; the network attribute ``net`` became ``model``.

    Why: format 0 had no version, so the loader could not tell layouts apart; and the
    seed-era module called its network ``net`` while knoblab's module calls it ``model``.
    """
    hp = ckpt.get("hyper_parameters") or {}
    block = ckpt.setdefault("knoblab", {})
    block.setdefault("model_kind", hp.get("model_kind"))
    block.setdefault("model_config", dict(hp.get("model_config") or {}))
    sd = ckpt.get("state_dict") or {}
    ckpt["state_dict"] = {
        ("model." + k[4:] if k.startswith("net.") else k): v for k, v in sd.items()
    }
    block["format_version"] = max(int(block.get("format_version", 0)), 1)
    return ckpt


def v1_to_v2(ckpt: Checkpoint) -> Checkpoint:
    """1 -> 2: ``model_kind`` + ``model_config`` become one mapping ``model = {kind, config}``.

    Why: the safetensors weights export describes its model with the same mapping, so
    checkpoints and exports share one reader and one "checkpoint of another model" check.
    """
    block = ckpt.setdefault("knoblab", {})
    if "model" not in block:
        block["model"] = {
            "kind": block.get("model_kind"),
            "config": dict(block.get("model_config") or {}),
        }
    block.pop("model_kind", None)
    block.pop("model_config", None)
    block["format_version"] = max(int(block.get("format_version", 1)), 2)
    return ckpt


MIGRATIONS: dict[int, Callable[[Checkpoint], Checkpoint]] = {0: v0_to_v1, 1: v1_to_v2}


def migrate(ckpt: Checkpoint, source: str = "checkpoint") -> tuple[Checkpoint, int]:
    """Upgrade ``ckpt`` in place to ``CURRENT_FORMAT``; returns it and the version it had.

    Raises:
        CheckpointError: a newer format than this knoblab knows, or not a knoblab checkpoint.
    """
    old = format_version(ckpt, source)
    if old > CURRENT_FORMAT:
        raise CheckpointError(
            f"{source}: knoblab.format_version={old} is newer than this knoblab supports: "
            f"allowed is 0..{CURRENT_FORMAT} (upgrade knoblab to read it)"
        )
    hp = ckpt.get("hyper_parameters")
    if old == 0 and not isinstance(hp, dict):
        raise CheckpointError(
            f"{source}: hyper_parameters={_short(hp)} is invalid: allowed is a mapping"
        )
    for v in range(old, CURRENT_FORMAT):
        ckpt = MIGRATIONS[v](ckpt)
    _check_block(ckpt["knoblab"], source)
    return ckpt, old


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_block(block: dict[str, Any], source: str) -> None:
    """The current-format ``knoblab`` block has the types the readers rely on."""
    model = block.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(
            f"{source}: knoblab.model={_short(model)} is invalid: allowed is a mapping {{kind, config}}"
        )
    if not isinstance(model.get("kind"), str):
        raise CheckpointError(
            f"{source}: knoblab.model.kind={_short(model.get('kind'))} is invalid: "
            "allowed is a model family name"
        )
    config = model.get("config")
    if config is not None and not isinstance(config, dict):
        raise CheckpointError(
            f"{source}: knoblab.model.config={_short(config)} is invalid: allowed is a mapping"
        )
