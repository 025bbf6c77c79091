"""Build a dataset from its config section (``cfg.dataset``), by its ``format`` key.

Each format is a ``build(cfg: dict) -> VQADataset`` function, imported only when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knoblab._lazy import load_object
from knoblab.config import plain
from knoblab.data.sample import VQADataset
from knoblab.errors import ConfigError

FORMATS: dict[str, str] = {
    "shapes": "knoblab.data.shapes:build",
    "jsonl": "knoblab.data.formats:build_jsonl",
    "coco_vqa": "knoblab.data.formats:build_coco_vqa",
    "hf_disk": "knoblab.data.formats:build_hf_disk",
    "hf": "knoblab.data.hf_load:build_hf",
    "omnidocbench": "knoblab.data.formats:build_omnidocbench",
}


def build_dataset(cfg: Mapping[str, Any]) -> VQADataset:
    """The dataset described by ``cfg`` (``format`` picks the loader; default ``shapes``)."""
    data = dict(plain(cfg) or {})
    data.pop("sampling", None)
    fmt = data.get("format", "shapes")
    prompt = data.pop("prompt", None)  # applied by the sweep runner (knoblab.data.prompt)
    if isinstance(prompt, str) and fmt == "omnidocbench":
        data.setdefault("question", prompt)  # its page question was called `prompt` before
    elif prompt is not None and not isinstance(prompt, Mapping):
        raise ConfigError("dataset.prompt", prompt, "a mapping {pre: text, post: text or null}")
    if fmt not in FORMATS:
        raise ConfigError("dataset.format", fmt, f"one of {', '.join(FORMATS)}")
    return load_object(FORMATS[fmt])(data)
