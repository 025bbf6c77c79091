"""Hugging Face VLMs behind the adapter protocol (``model.kind: hf``).

``build(cfg)`` loads a checkpoint from a local directory and wraps it in an
:class:`~knoblab.models.hf.base.HFAdapter` of its family (``cfg.family``, or found from
``config.json``'s ``model_type``). Families and their knobs: ``docs/knobs.md``.

Config keys (``conf/model/hf_*.yaml``; the hardware preset is merged underneath):
``path``, ``family``, ``name``, ``dtype`` (bf16 | fp16 | fp32), ``device``,
``device_map``, ``attn_implementation``, ``max_new_tokens``, ``knob_values``.

Example:
    >>> from knoblab.models.hf import build
    >>> adapter = build({"path": "/ckpt/Qwen2.5-VL-3B-Instruct", "dtype": "bf16", "device": "cuda"})
    >>> adapter.knobs()["vision_tokens"].values
    (16, 32, 64, ..., 16384)
"""

from __future__ import annotations

import inspect
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knoblab._lazy import load_object
from knoblab.config import to_dataclass
from knoblab.errors import ConfigError
from knoblab.models.hf.base import (
    DTYPES,
    Family,
    HFAdapter,
    processor_without_video,
    transformers_class,
)

__all__ = ["FAMILIES", "HFAdapter", "HFConfig", "build", "family_of", "load_processor"]

#: family name -> "module:FAMILY" (imported on use).
FAMILIES: dict[str, str] = {
    "qwen2_5_vl": "knoblab.models.hf.qwen_vl:QWEN2_5_VL",
    "qwen3_vl": "knoblab.models.hf.qwen_vl:QWEN3_VL",
    "qwen3_vl_moe": "knoblab.models.hf.qwen_vl:QWEN3_VL_MOE",
    "smolvlm": "knoblab.models.hf.smolvlm:SMOLVLM",
    "idefics3": "knoblab.models.hf.smolvlm:IDEFICS3",
    "llava_onevision": "knoblab.models.hf.llava_onevision:LLAVA_ONEVISION",
    "deepseek_ocr2": "knoblab.models.hf.deepseek_ocr:DEEPSEEK_OCR2",
}

#: Hardware-preset keys the HF adapter does not use (accepted, ignored).
_HARDWARE_ONLY = ("kind", "compile", "memory_savings", "num_threads", "tf32", "cudnn_benchmark")
# (knoblab.profiling.hardware applies those process-wide before the model loads)


@dataclass
class HFConfig:
    """The ``model`` section of a Hugging Face checkpoint."""

    path: str = ""  # local directory with config.json, weights and processor files
    family: str = "auto"  # a key of FAMILIES, or auto (from config.json's model_type)
    name: str = ""  # name in records; default: the directory name
    dtype: str = "bf16"  # bf16 | fp16 | fp32
    device: str = "cpu"  # device the model runs on (ignored when device_map is set)
    device_map: str | None = None  # e.g. auto: let accelerate place the layers
    attn_implementation: str | None = (
        None  # eager | sdpa | flash_attention_2 | None (transformers' choice)
    )
    max_new_tokens: int = 16  # default decode cap
    knob_values: dict[str, list[Any]] = field(default_factory=dict)  # per-knob allowed values

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("path", self.path, "a local checkpoint directory")
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", self.dtype, f"one of {', '.join(DTYPES)}")
        if not isinstance(self.knob_values, dict):
            raise ConfigError("knob_values", self.knob_values, "a mapping knob -> list of values")
        if self.family != "auto" and self.family not in FAMILIES:
            raise ConfigError("family", self.family, f"auto or one of {', '.join(FAMILIES)}")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", self.max_new_tokens, "an integer >= 1")


def family_of(path: str | Path, family: str = "auto") -> Family:
    """The family of the checkpoint at ``path`` (``family`` wins unless ``auto``)."""
    if family == "auto":
        cfg_file = Path(path) / "config.json"
        if not cfg_file.is_file():
            raise ConfigError(
                "model.path", str(path), "a directory with a config.json (a saved checkpoint)"
            )
        model_type = json.loads(cfg_file.read_text()).get("model_type", "")
        for ref in FAMILIES.values():
            if model_type in load_object(ref).model_types:
                return load_object(ref)
        raise ConfigError(
            "model.family",
            f"auto (model_type {model_type!r})",
            f"a checkpoint of {', '.join(FAMILIES)}",
        )
    if family not in FAMILIES:
        raise ConfigError("model.family", family, f"auto or one of {', '.join(FAMILIES)}")
    return load_object(FAMILIES[family])


def load_processor(family: Family, path: str | Path) -> Any:
    """The checkpoint's processor; built from its parts when ``AutoProcessor`` cannot.

    NOTE: without torchvision, transformers cannot build the video processor every
    Qwen/SmolVLM/LLaVA processor declares, so ``AutoProcessor`` fails; we then build the
    family's processor from its tokenizer and PIL image processor (images only).
    """
    from transformers import AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(path)
    except (ImportError, AttributeError, TypeError, ValueError) as first:
        try:
            tok = AutoTokenizer.from_pretrained(path)
            ip = transformers_class(family.image_processor_class).from_pretrained(path)
            cls = processor_without_video(transformers_class(family.processor_class))
            template = None
            jinja = Path(path) / "chat_template.jinja"
            if jinja.is_file():
                template = jinja.read_text()
            kwargs: dict[str, Any] = {"chat_template": template}
            params = inspect.signature(cls.__init__).parameters
            if "video_processor" in params:
                kwargs["video_processor"] = None
            settings = Path(path) / "processor_config.json"
            if settings.is_file():  # e.g. image_seq_len; other keys belong to the parts
                saved = json.loads(settings.read_text())
                kwargs.update({k: v for k, v in saved.items() if k in params and k not in kwargs})
            return cls(image_processor=ip, tokenizer=tok, **kwargs)
        except Exception as exc:
            raise ConfigError(
                "model.path",
                str(path),
                f"a {family.name} checkpoint with processor files ({first}; {exc})",
            ) from None


def build(cfg: Mapping[str, Any]) -> HFAdapter:
    """The adapter for ``cfg`` (the ``model`` section with the hardware preset merged under it)."""
    import torch

    data = {k: v for k, v in dict(cfg).items() if k not in _HARDWARE_ONLY}
    for key in ("dtype", "device"):  # a preset's null leaves the default
        if data.get(key, "") is None:
            del data[key]
    c = to_dataclass(data, HFConfig, "model")
    if not c.device_map:  # a one-line error, not torch's AssertionError at .to("cuda")
        from knoblab.models.registry import check_device

        check_device(c.device, "model.device")
    path = Path(c.path).expanduser()
    if not path.is_dir():
        raise ConfigError("model.path", c.path, "an existing local checkpoint directory")
    family = family_of(path, c.family)
    kwargs: dict[str, Any] = {"dtype": DTYPES[c.dtype]}
    if c.device_map:
        kwargs["device_map"] = c.device_map
    if c.attn_implementation:
        kwargs["attn_implementation"] = c.attn_implementation
    try:
        model = transformers_class(family.model_class).from_pretrained(path, **kwargs)
        if not c.device_map:
            model = model.to(torch.device(c.device))
    except pickle.UnpicklingError:  # torch.load(weights_only=True) of a pytorch_model.bin
        raise ConfigError(
            "model.path",
            c.path,
            f"a {family.name} checkpoint whose pytorch_model.bin holds tensors only (it holds "
            "other objects or is corrupt; refusing to unpickle it - prefer model.safetensors)",
        ) from None
    except (OSError, ValueError, ImportError, RuntimeError, KeyError) as exc:
        # transformers' messages span lines; keep the first (the cause) on one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if c.device_map and "accelerate" in reason:
            raise ConfigError(
                "model.device_map", c.device_map, "null (accelerate is not installed)"
            ) from None
        raise ConfigError(
            "model.path",
            c.path,
            f"a loadable {family.name} checkpoint for these settings ({reason})",
        ) from None
    processor = load_processor(family, path)
    return HFAdapter(
        model,
        processor,
        family,
        name=c.name or path.name,
        max_new_tokens=c.max_new_tokens,
        knob_values=c.knob_values,
    )
