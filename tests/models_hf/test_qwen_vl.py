"""Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE: tiny random checkpoints saved, loaded, swept."""

from __future__ import annotations

import pytest

from knoblab.errors import ConfigError
from knoblab.models.hf import build
from knoblab.models.hf.tiny import write_tiny_checkpoint

FAMILIES = ["qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"]


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, tmp_path_factory):
    path = write_tiny_checkpoint(request.param, tmp_path_factory.mktemp(request.param))
    a = build({"path": str(path), "dtype": "fp32", "max_new_tokens": 6})
    assert a.family.name == request.param  # found from config.json's model_type
    yield a
    a.restore()


def test_two_values_of_each_knob_match_generate_and_add_up(adapter, checks):
    specs = adapter.knobs()
    expected = {"vision_tokens", "num_active_blocks"} | (
        {"top_k"} if adapter.family.name.endswith("moe") else set()
    )
    assert set(specs) == expected
    for name, spec in specs.items():
        for value in (spec.values[0], spec.default):
            out = checks.greedy_and_stages(adapter, {name: value})
            assert out["eff"][name] == value


def test_fewer_vision_tokens_fewer_image_tokens(adapter, checks):
    small = checks.run(adapter, {"vision_tokens": 4})["prepared"]
    large = checks.run(adapter, {"vision_tokens": 64})["prepared"]
    assert 0 < small.actual_vision_tokens <= 4 < large.actual_vision_tokens <= 64
    assert small.input_text_tokens == large.input_text_tokens


def test_fewer_active_blocks_fewer_layer_calls(adapter, checks):
    full = checks.layer_calls(adapter, {"num_active_blocks": 2})
    half = checks.layer_calls(adapter, {"num_active_blocks": 1})
    assert half * 2 == full > 0
    eff = adapter.apply_knobs({"num_active_blocks": 1})
    assert eff["active_block_indices"] == [0] and eff["num_total_blocks"] == 2
    adapter.restore()
    assert checks.layer_calls(adapter, {}) == full  # restored: every layer runs again


def test_top_k_sets_experts_per_token_or_is_an_error(adapter, checks):
    if not adapter.family.name.endswith("moe"):
        with pytest.raises(ConfigError, match="knobs.top_k"):
            adapter.apply_knobs({"top_k": 2})
        return
    assert checks.experts_per_token(adapter, {"top_k": 1}) == {1}
    assert checks.experts_per_token(adapter, {"top_k": 3}) == {3}
    adapter.restore()
    assert checks.experts_per_token(adapter, {}) == {2}  # the checkpoint's num_experts_per_tok


def test_value_outside_the_knob_is_a_one_line_error(adapter, checks):
    with pytest.raises(ConfigError, match=r"knobs.num_active_blocks=9 .*one of \[1, 2\]"):
        adapter.apply_knobs({"num_active_blocks": 9})
    with pytest.raises(ConfigError, match="did you mean vision_tokens"):
        adapter.apply_knobs({"vision_token": 4})
