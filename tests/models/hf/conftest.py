"""Shared checks for every Hugging Face family: the protocol loop, knobs and their effects."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from PIL import Image

from knoblab.data import Sample
from knoblab.models.adapter import Generation
from knoblab.models.hf.base import HFAdapter, moe_routers
from knoblab.profiling.measure import infer
from knoblab.profiling.timer import StageTimer

#: Test image size per family (DeepSeek-OCR-2 tiles only pages larger than 768 px).
SIZES = {"deepseek_ocr2": (1000, 500)}  # 2:1 -> a 2 x 1 tile grid: 3 views


def sample(size: tuple[int, int] = (224, 168)) -> Sample:
    """One question about a small red rectangle."""
    image = Image.new("RGB", size, (30, 30, 200))
    image.paste((220, 40, 40), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return Sample(
        sample_id=0, question="what is the color of the square ?", answers=["red"], image=image
    )


def run_protocol(
    adapter: HFAdapter, knobs: dict[str, Any], max_new_tokens: int = 4
) -> dict[str, Any]:
    """Call the adapter exactly as the sweep runner does; return tokens, stage times and counts."""
    eff = adapter.apply_knobs(knobs)
    prepared = adapter.preprocess(sample(SIZES.get(adapter.family.name, (224, 168))))
    timer = StageTimer("cpu")
    gen, _ = infer(adapter, prepared, timer, max_new_tokens)  # the runner's timed calls
    assert isinstance(gen, Generation)
    return {"eff": eff, "prepared": prepared, "gen": gen, "times": timer.read()}


def check_greedy_and_stages(adapter: HFAdapter, knobs: dict[str, Any]) -> dict[str, Any]:
    """Greedy output == model.generate's, and the stage times add up to the total within 2%.

    NOTE: on this shared 2-core machine a run can be preempted between two stages; the
    sum is checked on the best of up to 3 runs (a systematic gap fails all three).
    """
    gaps = []
    for _ in range(3):
        out = run_protocol(adapter, knobs)
        t = out["times"]
        assert all(t[s] > 0 for s in ("vision", "prefill", "decode")), t
        gaps.append(abs(t["vision"] + t["prefill"] + t["decode"] - t["total"]) / t["total"])
        if gaps[-1] <= 0.02:
            break
    assert min(gaps) <= 0.02, gaps
    ref = adapter.reference_generate(out["prepared"], 4)
    assert out["gen"].token_ids == ref, (knobs, out["gen"].token_ids, ref)
    return out


def count_layer_calls(adapter: HFAdapter, knobs: dict[str, Any]) -> int:
    """Decoder-layer forward calls during one generation (hooks on every layer)."""
    calls = []
    handles = [
        layer.register_forward_hook(lambda *a: calls.append(1)) for layer in adapter._all_layers
    ]
    try:
        run_protocol(adapter, knobs, max_new_tokens=3)
    finally:
        for h in handles:
            h.remove()
    return len(calls)


def experts_per_token(adapter: HFAdapter, knobs: dict[str, Any]) -> set[int]:
    """The number of experts each router picked per token, over one generation."""
    seen: set[int] = set()

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        indices = output[-1] if isinstance(output, tuple) else output
        seen.add(int(indices.shape[-1]))

    routers = moe_routers(adapter._all_layers)
    handles = [r.register_forward_hook(hook) for r in routers]
    try:
        run_protocol(adapter, knobs, max_new_tokens=3)
    finally:
        for h in handles:
            h.remove()
    return seen


#: The families every per-family test runs (test_families, test_batch_infer).
FAMILIES = [
    "qwen2_5_vl",
    "qwen3_vl",
    "qwen3_vl_moe",
    "smolvlm",
    "idefics3",
    "llava_onevision",
    # 768-px views (fixed by the model's learned queries): seconds per run on a busy CPU
    pytest.param("deepseek_ocr2", marks=pytest.mark.slow),
    # unmapped families: the generic fallback (knoblab.models.hf.generic)
    "gemma3",
    "glm4v_moe",
]


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda p: getattr(p, "values", [p])[0])
def hf_family(request) -> str:
    """Each family of :data:`FAMILIES` in turn (a test module builds its own adapter)."""
    return request.param


@pytest.fixture(scope="session")
def checks() -> SimpleNamespace:
    """The helpers above, for the family tests (conftest modules cannot be imported)."""
    return SimpleNamespace(
        sample=sample,
        sizes=SIZES,
        run=run_protocol,
        greedy_and_stages=check_greedy_and_stages,
        layer_calls=count_layer_calls,
        experts_per_token=experts_per_token,
    )
