"""What knoblab relies on in transformers beyond its documented API.

* The auto-class name tables (module constants, not documented API): the generic
  fallback (``knoblab.models.hf.generic``) asks them which model types load with
  ``AutoModelForImageTextToText`` and which processor / PIL image processor a model type
  uses when a checkpoint's own files do not say.
* ``GenerationMixin`` privates that ``generate`` calls, for the split generation loop of
  ``knoblab.models.hf.base`` (vision, prefill and decode timed apart).
* ``ProcessorMixin.check_argument_for_proper_class``, overridden so a processor builds
  without a video processor (torchvision).

Tested in ``tests/_compat/test_transformers.py``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


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


# -- GenerationMixin privates: the split generation loop of ``knoblab.models.hf.base`` ----------
#
# The loop (``encode_vision`` -> ``prefill`` -> ``decode``) mirrors ``generate``'s greedy
# path call for call, so it calls the helpers ``generate`` itself calls. They are private
# in transformers; each wrapper fails with one line naming itself when a release drops its
# helper, and tests/_compat/test_transformers.py runs the loop against ``generate``.


def _mixin_method(name: str, wrapper: str) -> Any:
    from transformers import GenerationMixin

    method = getattr(GenerationMixin, name, None)
    if method is None:
        raise RuntimeError(
            f"transformers.GenerationMixin no longer has {name}: "
            f"update knoblab._compat.transformers.{wrapper}"
        )
    return method


def supports_mm_encoder_outputs(model: Any) -> bool:
    """True when ``model.forward`` takes pre-encoded images (``mm_encoder_outputs``).

    Why: ``generate`` runs the vision tower before its prefill only for such models
    (``GenerationMixin._supports_mm_encoder_outputs``); others encode images inside
    their first forward, so the loop then times no separate vision stage.
    """
    return bool(_mixin_method("_supports_mm_encoder_outputs", "supports_mm_encoder_outputs")(model))


def encode_multimodal(model: Any, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model_kwargs`` with the images encoded (``mm_encoder_outputs``), as ``generate`` does.

    Wraps ``GenerationMixin._prepare_multimodal_encoder_kwargs_for_generation``.
    """
    name = "_prepare_multimodal_encoder_kwargs_for_generation"
    return _mixin_method(name, "encode_multimodal")(model, model_kwargs)


def generation_position_ids(
    model: Any, input_ids: torch.Tensor, model_kwargs: dict[str, Any]
) -> torch.Tensor:
    """The prompt's position ids as ``generate`` computes them (M-RoPE for Qwen).

    Wraps ``GenerationMixin._prepare_position_ids_for_generation`` (the model's own
    override when it has one, e.g. Qwen's image-grid positions).
    """
    _mixin_method("_prepare_position_ids_for_generation", "generation_position_ids")
    return model._prepare_position_ids_for_generation(input_ids, model_kwargs)


def update_generation_kwargs(
    model: Any, outputs: Any, model_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The model kwargs for the next decode step after ``outputs`` (cache, mask, positions).

    Wraps ``GenerationMixin._update_model_kwargs_for_generation`` (decoder-only models).
    """
    _mixin_method("_update_model_kwargs_for_generation", "update_generation_kwargs")
    return model._update_model_kwargs_for_generation(
        outputs, model_kwargs, is_encoder_decoder=False
    )


def decode_context(model: Any) -> contextlib.AbstractContextManager[Any]:
    """The context ``generate`` decodes in (``_optimize_model_for_decode``: the MoE kernel switch).

    Releases before 5.x have none; then a null context (nothing to switch).
    """
    optimize = getattr(model, "_optimize_model_for_decode", None)
    return optimize() if optimize is not None else contextlib.nullcontext()


def processor_without_video(cls: type) -> type:
    """``cls`` (a ``ProcessorMixin`` subclass) accepting ``video_processor=None``.

    Why: transformers builds video processors with torchvision only; without it a VLM
    processor cannot be constructed at all. Images need no video processor, so this
    subclass skips ``ProcessorMixin.check_argument_for_proper_class`` (an undocumented
    hook of ``__init__``) for a missing one (images only).
    """
    if not callable(getattr(cls, "check_argument_for_proper_class", None)):
        raise RuntimeError(
            f"{cls.__name__} has no check_argument_for_proper_class: "
            "update knoblab._compat.transformers.processor_without_video"
        )

    class _ImagesOnly(cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None and argument_name == "video_processor":
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    _ImagesOnly.__name__ = _ImagesOnly.__qualname__ = cls.__name__
    return _ImagesOnly
