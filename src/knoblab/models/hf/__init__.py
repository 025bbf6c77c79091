"""Hugging Face VLMs behind the adapter protocol (``model.kind: hf``).

``build(cfg)`` loads a checkpoint from a local directory and wraps it in an
:class:`~knoblab.models.hf.base.HFAdapter` of its family (``cfg.family``, or found from
``config.json``'s ``model_type``). Families and their knobs: ``docs/knobs.md``.

Config keys (``conf/model/hf_*.yaml``; the hardware preset is merged underneath):
``path``, ``family``, ``name``, ``dtype`` (bf16 | fp16 | fp32), ``device``,
``device_map``, ``attn_implementation``, ``max_new_tokens``, ``knob_values``.

Example (a tiny random checkpoint; a real one is a folder or a cached hub id)::

    >>> from knoblab.models.hf import build
    >>> from knoblab.models.hf.tiny import write_tiny_checkpoint
    >>> path = write_tiny_checkpoint("qwen2_5_vl", tmp_path / "tiny-qwen")
    >>> adapter = build({"path": str(path), "dtype": "float32"})
    >>> adapter.knobs()["vision_tokens"].values  # a real Qwen2.5-VL: (16, 32, 64, ..., 16384)
    (4, 16, 64)
"""

from __future__ import annotations

import inspect
import json
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knoblab._compat.transformers import processor_without_video
from knoblab._lazy import load_object
from knoblab.config import to_dataclass
from knoblab.dtypes import canonical_dtype, torch_dtype
from knoblab.errors import CheckpointError, ConfigError
from knoblab.models.hf.base import Family, HFAdapter, transformers_class

_log = logging.getLogger(__name__)

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

    path: str = ""  # checkpoint folder, or a hub id org/name from the local HF cache
    family: str = "auto"  # auto (config.json's model_type), generic, or a key of FAMILIES
    name: str = ""  # name in records; default: the directory name
    dtype: str = "bfloat16"  # bfloat16 | float16 | float32 (or bf16 | fp16 | fp32)
    device: str = "cpu"  # device the model runs on (ignored when device_map is set)
    device_map: str | None = None  # e.g. auto: let accelerate place the layers
    attn_implementation: str | None = (
        None  # eager | sdpa | flash_attention_2 | None (transformers' choice)
    )
    max_new_tokens: int = 16  # default decode cap
    knob_values: dict[str, list[Any]] = field(default_factory=dict)  # per-knob allowed values

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError(
                "path", self.path, "a checkpoint folder or a hub id org/name in the local HF cache"
            )
        self.dtype = canonical_dtype(self.dtype, "dtype")
        if not isinstance(self.knob_values, dict):
            raise ConfigError("knob_values", self.knob_values, "a mapping knob -> list of values")
        if self.family not in ("auto", "generic", *FAMILIES):
            raise ConfigError(
                "family", self.family, f"auto, generic or one of {', '.join(FAMILIES)}"
            )
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", self.max_new_tokens, "an integer >= 1")


def checkpoint_model_type(path: str | Path) -> str:
    """``config.json``'s ``model_type`` of the checkpoint at ``path``."""
    cfg_file = Path(path) / "config.json"
    try:
        data = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        raise ConfigError(
            "model.path", str(path), "a folder with a readable config.json (a saved checkpoint)"
        ) from None
    model_type = data.get("model_type", "") if isinstance(data, dict) else ""
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError("model.path", str(path), "a checkpoint whose config.json has model_type")
    return model_type


def family_of(path: str | Path, family: str = "auto") -> Family:
    """The family of the checkpoint at ``path``, from ``config.json``'s ``model_type``.

    ``family="auto"`` (``model=hf``) takes the mapped family of that model type, or the
    generic fallback (:mod:`knoblab.models.hf.generic`) for any other image-text-to-text
    type; ``generic`` forces the fallback. A named family must match the checkpoint:
    a SmolVLM checkpoint under ``model=hf_qwen2_5_vl`` is a one-line ``ConfigError``.
    """
    from knoblab.models.hf.generic import generic_family

    if family not in ("auto", "generic", *FAMILIES):
        raise ConfigError("model.family", family, f"auto, generic or one of {', '.join(FAMILIES)}")
    model_type = checkpoint_model_type(path)
    if family == "generic":
        return generic_family(Path(path), model_type)
    mapped = next(
        (f for f in map(load_object, FAMILIES.values()) if model_type in f.model_types), None
    )
    if family == "auto":
        return mapped if mapped is not None else generic_family(Path(path), model_type)
    chosen = load_object(FAMILIES[family])
    if model_type not in chosen.model_types:
        right = f"model=hf_{mapped.name} or " if mapped is not None else ""
        raise ConfigError(
            "model.family",
            family,
            f"{right}model=hf (reads the family from config.json)",
            f"{path} holds a {model_type!r} checkpoint, not {family}",
        )
    return chosen


def _chat_template(path: Path) -> str | None:
    """The checkpoint's chat template: chat_template.jinja, or the older chat_template.json."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    try:
        saved = json.loads((path / "chat_template.json").read_text())
    except (OSError, ValueError):
        return None
    template = saved.get("chat_template") if isinstance(saved, dict) else None
    return template if isinstance(template, str) else None


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
            template = _chat_template(Path(path))
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


def load_model(family: Family, path: Path, c: HFConfig) -> Any:
    """The model of ``family`` from ``path``, every weight from the checkpoint.

    Raises:
        CheckpointError: weights missing from the checkpoint (they would be random),
            unexpected (they belong to another model) or of the wrong shape; the first
            few keys are named.
        ConfigError: the checkpoint does not load with these settings.
    """
    import torch

    kwargs: dict[str, Any] = {"dtype": torch_dtype(c.dtype), "output_loading_info": True}
    if c.device_map:
        kwargs["device_map"] = c.device_map
    if c.attn_implementation:
        kwargs["attn_implementation"] = c.attn_implementation
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report is ours: one line, below
    try:
        model, info = transformers_class(family.model_class).from_pretrained(path, **kwargs)
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
    finally:
        hf_logging.set_verbosity(verbosity)
    check_loading_info(info, c.path)
    if not c.device_map:
        model = model.to(torch.device(c.device))
    return model


def check_loading_info(info: Mapping[str, Any], path: str) -> None:
    """``CheckpointError`` when ``from_pretrained`` left weights random or unused."""
    for kind, what in (
        ("missing_keys", "missing from the checkpoint (they would be random)"),
        ("unexpected_keys", "in the checkpoint but not in the model (another model's weights?)"),
        ("mismatched_keys", "of another shape than the model's"),
    ):
        keys = sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(kind) or ())
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise CheckpointError(
                f"model.path={path}: {len(keys)} weights {what}: {', '.join(keys[:3])}{more}; "
                "knoblab never measures random weights"
            )


def build(cfg: Mapping[str, Any]) -> HFAdapter:
    """The adapter for ``cfg`` (the ``model`` section with the hardware preset merged under it).

    ``model.path`` is a checkpoint folder or a hub id resolved from the local HF cache
    (:func:`knoblab.hub.resolve_checkpoint`; nothing is downloaded). The family
    comes from ``config.json`` (:func:`family_of`); an unmapped image-text-to-text family
    runs on the generic fallback, which names the knobs it cannot map in one logged line.
    """
    from knoblab.hub import resolve_checkpoint
    from knoblab.models.hf.generic import unmapped, unmapped_line, with_processor

    data = {k: v for k, v in dict(cfg).items() if k not in _HARDWARE_ONLY}
    for key in ("dtype", "device"):  # a preset's null leaves the default
        if data.get(key, "") is None:
            del data[key]
    c = to_dataclass(data, HFConfig, "model")
    if not c.device_map:  # a one-line error, not torch's AssertionError at .to("cuda")
        from knoblab.models.registry import check_device

        check_device(c.device, "model.device")
    path = resolve_checkpoint(c.path)
    family = family_of(path, c.family)
    model = load_model(family, path, c)
    processor = load_processor(family, path)
    generic = family.name not in FAMILIES
    if generic:
        family = with_processor(family, processor)
    local = Path(c.path).expanduser()
    adapter = HFAdapter(
        model,
        processor,
        family,
        name=c.name or (local.name if local.is_dir() else c.path.rsplit("/", 1)[-1]),
        max_new_tokens=c.max_new_tokens,
        knob_values=c.knob_values,
    )
    if generic:
        adapter.unmapped = unmapped(model, family, adapter.knobs())
        _log.warning(unmapped_line(family, adapter.unmapped, list(adapter.knobs())))
    return adapter
