"""The generic fallback: any other ``AutoModelForImageTextToText`` family, knobs mapped generically.

A checkpoint whose ``model_type`` no mapped family claims (``docs/knobs.md``) still runs,
with the knobs that need no knowledge of the family:

- ``num_active_blocks``: the decoder's ``layers`` list is cut, as for every family;
- ``top_k``: every MoE router with an integer ``top_k`` attribute gets the new value;
- ``vision_tokens``: only where the image processor exposes a pixel budget the way
  Qwen-VL does (integer ``patch_size`` and ``merge_size`` and a ``size`` with
  ``longest_edge`` in pixels, e.g. GLM-4.1V / GLM-4.5V, ERNIE-4.5-VL): ``vision_tokens=T``
  sets ``max_pixels = T * (patch_size * merge_size)^2``.

The knobs it cannot map are named in one line when the model loads (:func:`unmapped`,
logged as a warning and kept on ``adapter.unmapped``), never silently ignored.

NOTE: prefill, decode and ``encode_vision`` are the shared loop of ``base.py``; a family
whose ``generate`` does something the loop does not (a custom ``prepare_inputs``) is
still checked against ``model.generate`` by the tests of the families we ship.

Example:
    >>> family = generic_family(Path("/ckpt/gemma-3-4b-it"), "gemma3")
    >>> family.name, family.vision is None
    ('gemma3', True)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from knoblab._compat.transformers import (
    image_text_to_text_types,
    pil_image_processor_name,
    processor_class_name,
)
from knoblab.errors import ConfigError
from knoblab.models.hf.base import Family
from knoblab.models.hf.qwen_vl import PixelBudget

#: Config keys that say a text model is a mixture of experts.
_MOE_KEYS = ("num_experts_per_tok", "moe_k", "num_experts", "n_routed_experts")


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _processor_class(path: Path, model_type: str) -> str:
    for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
        cls = _json(path / name).get("processor_class")
        if isinstance(cls, str) and cls:
            return cls
    return processor_class_name(model_type) or "AutoProcessor"


def _image_processor_class(path: Path, model_type: str) -> str:
    import transformers

    saved = _json(path / "preprocessor_config.json").get("image_processor_type")
    if isinstance(saved, str) and saved:
        pil = saved if saved.endswith("Pil") else saved.removesuffix("Fast") + "Pil"
        return pil if hasattr(transformers, pil) else saved
    return pil_image_processor_name(model_type) or "AutoImageProcessor"


def has_pixel_budget(processor: Any) -> bool:
    """Whether the image processor's ``size`` is a Qwen-style pixel budget."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    try:
        edges = (size["longest_edge"], size["shortest_edge"])  # dict or SizeDict
    except (KeyError, TypeError):
        return False
    return (
        all(isinstance(v, int) for v in (getattr(ip, "patch_size", None), ip.merge_size, *edges))
        if hasattr(ip, "merge_size")
        else False
    )


def image_token_id(adapter: Any) -> int | None:
    """The id of the image placeholder token, from the config or the processor."""
    cfg = adapter.model.config
    for attr in ("image_token_id", "image_token_index"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int):
            return value
    value = getattr(adapter.processor, "image_token_id", None)
    return value if isinstance(value, int) else None


def _count_image_tokens(adapter: Any, enc: Mapping[str, Any]) -> int:
    token = image_token_id(adapter)
    return 0 if token is None else int((enc["input_ids"] == token).sum())


def _layout(adapter: Any, enc: Mapping[str, Any], image: Any) -> dict[str, Any]:
    grid = enc.get("image_grid_thw")
    patch = getattr(adapter.processor.image_processor, "patch_size", None)
    if grid is None or not isinstance(patch, int):
        return {}
    _, rows, cols = (int(v) for v in grid[0])
    return {"image_size": (cols * patch, rows * patch)}


def generic_family(path: Path, model_type: str) -> Family:
    """The fallback family of a checkpoint of ``model_type`` at ``path``.

    Raises:
        ConfigError: ``model_type`` is not an ``AutoModelForImageTextToText`` family of
            the installed transformers.
    """
    if model_type not in image_text_to_text_types():
        import transformers

        raise ConfigError(
            "model.path",
            str(path),
            "a vision-language checkpoint (AutoModelForImageTextToText)",
            f"its model_type {model_type!r} is not one in transformers {transformers.__version__}",
        )
    return Family(
        name=model_type,
        model_types=(model_type,),
        model_class="AutoModelForImageTextToText",
        processor_class=_processor_class(path, model_type),
        image_processor_class=_image_processor_class(path, model_type),
        fallback_prompt=lambda question: question,  # replaced once the processor is known
        vision=None,  # set by with_processor: depends on the processor's settings
        tokens_per_image=_count_image_tokens,
        layout=_layout,
    )


def with_processor(family: Family, processor: Any) -> Family:
    """``family`` with the vision knob and the no-template prompt its processor allows."""
    import dataclasses

    token = getattr(processor, "image_token", None) or getattr(processor, "boi_token", None)
    prefix = f"{token}\n" if isinstance(token, str) else ""
    return dataclasses.replace(
        family,
        vision=PixelBudget() if has_pixel_budget(processor) else None,
        fallback_prompt=lambda question: prefix + question,
    )


def unmapped(model: nn.Module, family: Family, knobs: Mapping[str, Any]) -> dict[str, str]:
    """The knobs this generic family cannot map, each with why (empty: all mapped)."""
    out: dict[str, str] = {}
    if "vision_tokens" not in knobs:
        out["vision_tokens"] = "its image processor exposes no pixel budget"
    text = model.config.get_text_config()
    is_moe = any(isinstance(getattr(text, k, None), int) for k in _MOE_KEYS)
    if is_moe and "top_k" not in knobs:
        out["top_k"] = "its MoE blocks have no router with an integer top_k"
    return out


def unmapped_line(family: Family, missing: Mapping[str, str], mapped: list[str]) -> str:
    """The one line said at start: which knobs the fallback maps and which it cannot."""
    head = f"model_type {family.name!r} runs on the generic fallback; knobs: {', '.join(mapped)}"
    if not missing:
        return head
    return head + "; not mapped: " + "; ".join(f"{k} ({why})" for k, why in missing.items())
