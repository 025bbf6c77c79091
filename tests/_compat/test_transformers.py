"""Fails loudly when a transformers release changes what ``knoblab._compat.transformers`` uses."""

from __future__ import annotations

import inspect

import pytest
import transformers

from knoblab._compat.transformers import (
    decode_context,
    encode_multimodal,
    generation_position_ids,
    image_text_to_text_types,
    pil_image_processor_name,
    processor_class_name,
    processor_without_video,
    supports_mm_encoder_outputs,
    update_generation_kwargs,
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


# -- GenerationMixin privates: the split loop equals generate() through the wrappers ------------


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """A tiny random Qwen2.5-VL (a model with pre-encoded images and M-RoPE positions)."""
    from knoblab.models.hf import build
    from knoblab.models.hf.tiny import write_tiny_checkpoint

    path = write_tiny_checkpoint("qwen2_5_vl", tmp_path_factory.mktemp("qwen"))
    return build({"path": str(path), "dtype": "fp32", "max_new_tokens": 5})


def _inputs(adapter):
    from PIL import Image

    from knoblab.data import Sample

    image = Image.new("RGB", (112, 84), (200, 30, 30))
    return adapter.preprocess(Sample(sample_id=0, question="what ?", answers=["x"], image=image))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("_supports_mm_encoder_outputs", ["self"]),
        ("_prepare_multimodal_encoder_kwargs_for_generation", ["self", "model_kwargs"]),
        ("_prepare_position_ids_for_generation", ["self", "inputs_tensor", "model_kwargs"]),
        ("_update_model_kwargs_for_generation", ["self", "outputs", "model_kwargs"]),
        ("_optimize_model_for_decode", ["self"]),
    ],
)
def test_generation_mixin_still_has_the_helpers_the_loop_calls(name, params):
    method = getattr(transformers.GenerationMixin, name)
    got = list(inspect.signature(method).parameters)
    assert got[: len(params)] == params, f"GenerationMixin.{name}{got}: update _compat.transformers"
    if name == "_update_model_kwargs_for_generation":
        assert "is_encoder_decoder" in got


def test_wrappers_drive_a_loop_equal_to_generate(qwen):
    """The wrappers, called in generate's order, reproduce model.generate's greedy tokens."""
    model, prepared = qwen.model, _inputs(qwen)
    assert supports_mm_encoder_outputs(model)
    raw = {k: v for k, v in prepared.inputs.items() if k != "input_ids"}
    encoded = encode_multimodal(model, dict(raw))
    assert "mm_encoder_outputs" in encoded and "pixel_values" not in encoded
    positions = generation_position_ids(model, prepared.inputs["input_ids"], raw)
    assert positions.shape[-1] == prepared.inputs["input_ids"].shape[1]
    assert positions.dim() == 3  # M-RoPE: (3, batch, tokens)
    state = qwen.prefill(prepared, qwen.encode_vision(prepared))
    with decode_context(model):
        gen = qwen.decode(state, 5)
    assert gen.token_ids == qwen.reference_generate(prepared, 5)


def test_update_generation_kwargs_advances_the_cache_position(qwen):
    import torch

    prepared = _inputs(qwen)
    state = qwen.prefill(prepared, qwen.encode_vision(prepared))
    before = {
        k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.model_kwargs.items()
    }
    inputs = qwen.model.prepare_inputs_for_generation(
        state.input_ids, next_sequence_length=1, **state.model_kwargs
    )
    out = qwen.model(**inputs, return_dict=True)
    after = update_generation_kwargs(qwen.model, out, dict(state.model_kwargs))
    cache = after.get("cache", after.get("past_key_values"))
    assert cache is not None and cache.get_seq_length() == state.input_ids.shape[1]
    assert before.keys() <= after.keys()


def test_processor_without_video_accepts_none_and_still_checks_other_parts():
    """Without torchvision the plain class refuses video_processor=None; the wrapper builds."""
    from knoblab.models.hf.tiny import tiny_model

    _, built = tiny_model("qwen2_5_vl")
    plain = transformers.Qwen2_5_VLProcessor
    parts = {"image_processor": built.image_processor, "tokenizer": built.tokenizer}
    try:
        plain(**parts, video_processor=None)
    except Exception:  # noqa: BLE001 - whatever it raises: the reason the wrapper exists
        pass
    else:
        pytest.skip("this transformers accepts video_processor=None: the wrapper may go")
    cls = processor_without_video(plain)
    assert cls.__name__ == "Qwen2_5_VLProcessor"
    assert cls(**parts, video_processor=None).video_processor is None
    with pytest.raises(TypeError, match="image_processor|ImageProcessor"):
        cls(image_processor=object(), tokenizer=built.tokenizer, video_processor=None)
