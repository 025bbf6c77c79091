"""Every Hugging Face family: a tiny random checkpoint saved, loaded and swept.

For each family: two values of each knob it has, greedy output == ``model.generate``,
stage times adding up to the total, and each knob's effect seen with hooks.
"""

from __future__ import annotations

import pytest

from knoblab.data import Sample
from knoblab.errors import ConfigError, DataError
from knoblab.models.hf import build
from knoblab.models.hf.base import decoder_layers, moe_routers
from knoblab.models.hf.tiny import write_tiny_checkpoint

MOE = {"qwen3_vl_moe", "deepseek_ocr2", "glm4v_moe"}
#: families whose processor exposes no vision budget the fallback can map
NO_VISION = {"gemma3"}
# LLaVA-OneVision's bound leaves out one newline token per feature row (docs/knobs.md)
SLACK = {"llava_onevision": 1.25}


@pytest.fixture(scope="module")
def adapter(hf_family, tmp_path_factory):
    path = write_tiny_checkpoint(hf_family, tmp_path_factory.mktemp(hf_family))
    a = build({"path": str(path), "dtype": "fp32", "max_new_tokens": 4})
    assert a.family.name == hf_family  # found from config.json's model_type
    yield a
    a.restore()


def test_two_values_of_each_knob_match_generate_and_add_up(adapter, checks):
    specs = adapter.knobs()
    assert set(specs) == {"num_active_blocks"} | (
        {"top_k"} if adapter.family.name in MOE else set()
    ) | (set() if adapter.family.name in NO_VISION else {"vision_tokens"})
    default = checks.greedy_and_stages(adapter, {})  # every knob at its default
    check_layout(adapter, default["prepared"], checks.sizes.get(adapter.family.name, (224, 168)))
    for name, spec in specs.items():
        assert default["eff"][name] == spec.default
        low = checks.greedy_and_stages(adapter, {name: spec.values[0]})
        assert low["eff"][name] == spec.values[0] != spec.default
        if name == "vision_tokens":  # fewer image tokens; the text is the same
            small, large = low["prepared"], default["prepared"]
            slack = SLACK.get(adapter.family.name, 1.0)
            assert 0 < small.actual_vision_tokens <= spec.values[0] * slack
            assert small.actual_vision_tokens < large.actual_vision_tokens <= spec.default * slack
            assert small.input_text_tokens <= large.input_text_tokens


def test_fewer_active_blocks_fewer_layer_calls(adapter, checks):
    full = checks.layer_calls(adapter, {"num_active_blocks": 2})
    half = checks.layer_calls(adapter, {"num_active_blocks": 1})
    assert half * 2 == full > 0
    eff = adapter.apply_knobs({"num_active_blocks": 1})
    assert eff["active_block_indices"] == [0] and eff["num_total_blocks"] == 2
    assert len(decoder_layers(adapter.model)[1]) == 1
    adapter.restore()
    assert decoder_layers(adapter.model)[1] is adapter._all_layers  # every layer back


def test_top_k_sets_experts_per_token_or_is_an_error(adapter, checks):
    if adapter.family.name not in MOE:
        with pytest.raises(ConfigError, match="knobs.top_k"):
            adapter.apply_knobs({"top_k": 2})
        return
    assert checks.experts_per_token(adapter, {"top_k": 1}) == {1}
    assert checks.experts_per_token(adapter, {"top_k": 3}) == {3}
    adapter.restore()
    assert {r.top_k for r in moe_routers(adapter._all_layers)} == {2}  # the checkpoint's value


def test_value_outside_the_knob_is_a_one_line_error(adapter):
    with pytest.raises(ConfigError, match=r"knobs.num_active_blocks=9 .*one of \[1, 2\]"):
        adapter.apply_knobs({"num_active_blocks": 9})
    with pytest.raises(ConfigError, match="did you mean num_active_blocks"):
        adapter.apply_knobs({"num_active_block": 4})
    if adapter.family.name in NO_VISION:  # unmapped: asking for it is an error, not ignored
        with pytest.raises(ConfigError, match=r"knobs.vision_tokens"):
            adapter.apply_knobs({"vision_tokens": 4})


def check_layout(adapter, p, size):
    """The processed image's size / crops / tiling land in the records."""
    assert p.extra["original_image_size"] == list(size)
    w, h = p.image_size
    assert w > 0 and h > 0
    if adapter.family.name in ("smolvlm", "idefics3", "llava_onevision", "deepseek_ocr2"):
        assert p.num_crops >= 1
    if adapter.family.name == "llava_onevision":
        assert p.tiling[0] * p.tiling[1] == p.num_crops
    if adapter.family.name.startswith("qwen"):  # the resized image: a multiple of the patch grid
        unit = (
            adapter.processor.image_processor.patch_size
            * adapter.processor.image_processor.merge_size
        )
        assert (
            w % unit == 0 and h % unit == 0 and (w // unit) * (h // unit) == p.actual_vision_tokens
        )


def test_vision_settings_restored_and_bad_image_is_a_data_error(adapter, tmp_path):
    vis = adapter.family.vision
    if vis is None:
        assert adapter.family.name in NO_VISION and "vision_tokens" in adapter.unmapped
        return
    before = vis.snapshot(adapter.processor, adapter.model)
    adapter.apply_knobs({"vision_tokens": adapter.knobs()["vision_tokens"].values[0]})
    assert vis.snapshot(adapter.processor, adapter.model) != before
    adapter.restore()
    assert vis.snapshot(adapter.processor, adapter.model) == before
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"sample 5: image .*broken.png.* cannot be read"):
        adapter.preprocess(Sample(5, "what ?", ["x"], bad))
