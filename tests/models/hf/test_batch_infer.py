"""Batched inference of every Hugging Face family: each sample's answer equals its batch-1 answer.

The batch mixes image sizes and question lengths, so prompts are left-padded and (for
SmolVLM / LLaVA-OneVision) image views are padded too; some samples stop at EOS before
others, so finished rows ride along while the rest decode.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from knoblab.data import Sample
from knoblab.models.adapter import supports_batching
from knoblab.models.hf import build
from knoblab.models.hf.tiny import write_tiny_checkpoint
from knoblab.profiling.batch import measure_batch

#: DeepSeek-OCR-2 tiles only pages larger than 768 px
SCALE = {"deepseek_ocr2": 5}
#: tiny random checkpoints whose greedy tokens do not depend on the input (measured: the
#: same 5 tokens for every sample and knob), so no EOS splits the batch
INPUT_BLIND = {"deepseek_ocr2"}


def _sample(i: int, size: tuple[int, int], question: str, blue: int) -> Sample:
    """A red square on a noisy background (noise: tiny random models answer alike otherwise)."""
    rng = np.random.default_rng(i)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[..., 2] = blue
    image = Image.fromarray(pixels)
    image.paste((220, 40, 40), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return Sample(sample_id=i, question=question, answers=["red"], image=image)


def samples(family: str) -> list[Sample]:
    k = SCALE.get(family, 1)
    return [
        _sample(0, (224 * k, 168 * k), "what ?", 200),
        _sample(1, (160 * k, 300 * k), "what is the color of the big square on the left ?", 100),
        _sample(2, (200 * k, 200 * k), "color of the square ?", 10),
    ]


@pytest.fixture(scope="module")
def adapter(hf_family, tmp_path_factory):
    path = write_tiny_checkpoint(hf_family, tmp_path_factory.mktemp(hf_family))
    a = build({"path": str(path), "dtype": "fp32", "max_new_tokens": 5})
    yield a
    a.restore()


def batch_one(adapter, prepared, max_new):
    return [
        adapter.decode(adapter.prefill(p, adapter.encode_vision(p)), max_new).token_ids
        for p in prepared
    ]


def knob_settings(adapter) -> list[dict]:
    """The defaults, one active block, and the smallest vision budget where there is one."""
    out: list[dict] = [{}, {"num_active_blocks": 1}]
    if "vision_tokens" in adapter.knobs():
        out.append({"vision_tokens": adapter.knobs()["vision_tokens"].values[0]})
    return out


def split_token(seqs: list[list[int]]) -> int | None:
    """A token some samples produce after their first and others never do (an EOS to try)."""
    firsts = {t[0] for t in seqs}
    later = [set(t[1:-1]) - firsts for t in seqs]  # the last token would not shorten it
    return next(
        (t for s in later for t in sorted(s) if 0 < sum(t in x for x in later) < len(seqs)), None
    )


def test_batched_tokens_equal_batch_one(adapter):
    assert supports_batching(adapter)
    stop = None
    for knobs in knob_settings(adapter):
        adapter.apply_knobs(knobs)
        prepared = [adapter.preprocess(s) for s in samples(adapter.family.name)]
        assert len({int(p.inputs["input_ids"].shape[1]) for p in prepared}) > 1  # padded
        one = batch_one(adapter, prepared, 5)
        m = measure_batch(adapter, prepared, 5)
        assert m.batched and [g.token_ids for g in m.generations] == one, knobs
        texts = [
            adapter.processor.batch_decode([t], skip_special_tokens=True)[0].strip() for t in one
        ]
        assert [g.text for g in m.generations] == texts
        if stop is None and split_token(one) is not None:
            stop, stop_knobs, stop_prepared = split_token(one), knobs, prepared
    # an EOS that some samples reach before others: finished rows ride along unchanged
    if stop is None and adapter.family.name in INPUT_BLIND:
        return
    assert stop is not None
    adapter.apply_knobs(stop_knobs)
    saved = adapter.model.generation_config.eos_token_id
    adapter.model.generation_config.eos_token_id = stop
    try:
        one = batch_one(adapter, stop_prepared, 5)
        assert len({len(t) for t in one}) > 1, one
        m = measure_batch(adapter, stop_prepared, 5)
        assert [g.token_ids for g in m.generations] == one
        assert len(m.step_ms) == max(len(t) for t in one) - 1
        assert [len(r["itl_ms"]) for r in m.rows()] == [len(t) - 1 for t in one]
    finally:
        adapter.model.generation_config.eos_token_id = saved


def test_kv_bytes_per_token_equal_the_real_cache(adapter):
    """The analytic KV bytes (knoblab.models.kv) equal what the DynamicCache holds after prefill."""
    from knoblab.profiling.memory import weights_bytes

    total = weights_bytes(adapter)
    for blocks in (None, 1):
        adapter.apply_knobs({} if blocks is None else {"num_active_blocks": blocks})
        p = adapter.preprocess(samples(adapter.family.name)[1])
        state = adapter.prefill(p, adapter.encode_vision(p))
        cache = state.model_kwargs.get("cache") or state.model_kwargs.get("past_key_values")
        real = sum(
            layer.keys.nbytes + layer.values.nbytes
            for layer in cache.layers
            if getattr(layer, "keys", None) is not None
        )
        tokens = int(p.inputs["input_ids"].shape[1])
        assert real == adapter.kv_cache_bytes(tokens), (blocks, real, tokens)
        assert weights_bytes(adapter) == total  # skipped layers are still loaded
    adapter.restore()
