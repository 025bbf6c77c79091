"""transformers' auto-class name tables (module constants, not documented API).

The generic fallback (``knoblab.models.hf.generic``) asks them which model types load
with ``AutoModelForImageTextToText`` and which processor / PIL image processor a model
type uses when a checkpoint's own files do not say. Tested in ``tests/_compat``.
"""

from __future__ import annotations


def image_text_to_text_types() -> frozenset[str]:
    """Every ``model_type`` that ``AutoModelForImageTextToText`` can load."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return frozenset(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def processor_class_name(model_type: str) -> str | None:
    """The processor class ``AutoProcessor`` picks for ``model_type`` (None: unknown)."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    return name if isinstance(name, str) else None


def pil_image_processor_name(model_type: str) -> str | None:
    """The PIL-backend image processor class of ``model_type`` (None: unknown)."""
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    entry = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
    if isinstance(entry, dict):
        return entry.get("pil") or None
    if isinstance(entry, tuple):  # older releases: (slow, fast)
        return entry[0] or None
    return entry if isinstance(entry, str) else None
