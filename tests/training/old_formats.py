"""Test helpers: checkpoints in every old format, made from a current one.

Each ``to_vN`` undoes the migrations down to format N, producing exactly the layout
that format had (see ``knoblab.training.migrations``), so every migration is tested
against a fixture of its old format.
"""

from __future__ import annotations

import copy
from typing import Any


def to_v1(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Format 1: flat ``model_kind`` / ``model_config`` in the knoblab block."""
    old = copy.deepcopy(ckpt)
    block = old["knoblab"]
    model = block.pop("model")
    block.update(format_version=1, model_kind=model["kind"], model_config=model["config"])
    return old


def to_v0(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Format 0: no knoblab block; model in hyper_parameters; network attribute ``net``."""
    old = to_v1(ckpt)
    block = old.pop("knoblab")
    hp = old.setdefault("hyper_parameters", {})
    hp.pop("model_kind", None)
    hp.pop("model_config", None)
    hp.update(model_kind=block["model_kind"], model_config=block["model_config"])
    old["state_dict"] = {
        ("net." + k[6:] if k.startswith("model.") else k): v for k, v in old["state_dict"].items()
    }
    return old
