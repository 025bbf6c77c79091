"""transformers' auto-class name tables still answer as knoblab.models.hf.generic expects."""

from __future__ import annotations

import transformers

from knoblab._compat.transformers import (
    image_text_to_text_types,
    pil_image_processor_name,
    processor_class_name,
)


def test_auto_tables_name_real_classes():
    types = image_text_to_text_types()
    assert {"gemma3", "glm4v_moe", "qwen2_5_vl"} <= types
    assert "gpt2" not in types
    assert processor_class_name("gemma3") == "Gemma3Processor"
    assert processor_class_name("no-such-type") is None
    name = pil_image_processor_name("gemma3")
    assert name == "Gemma3ImageProcessorPil" and hasattr(transformers, name)
    assert pil_image_processor_name("no-such-type") is None
