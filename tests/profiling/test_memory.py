"""Memory measurement: the span's peak sees a known allocation; analytic KV bytes equal the cache."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from knoblab.data.shapes import ShapesVQA
from knoblab.errors import ConfigError
from knoblab.models.kv import (
    hf_kv_bytes_per_token,
    hf_kv_cache_bytes,
    kv_bytes_per_token,
    module_bytes,
)
from knoblab.models.reference.adapter import ReferenceAdapter
from knoblab.models.reference.weights import random_reference
from knoblab.profiling.memory import (
    MemorySpan,
    _reset_hwm,
    cached_tokens,
    kv_cache_bytes,
    rss_bytes,
    weights_bytes,
)

MB = 1 << 20
SIZE = 160 * MB


def _touch(nbytes: int) -> torch.Tensor:
    return torch.ones(nbytes // 4, dtype=torch.float32)  # written: resident


@pytest.mark.skipif(not _reset_hwm(), reason="this kernel refuses /proc/self/clear_refs")
def test_vmhwm_sees_a_freed_allocation():
    with MemorySpan("cpu", method="vmhwm") as span:
        x = _touch(SIZE)
        del x  # freed before the span ends: only the high-water mark still knows it
    r = span.result
    assert r.method == "vmhwm" and r.reserved_peak_bytes is None
    assert 0.95 * SIZE <= r.increase_bytes <= 1.3 * SIZE, r
    assert r.peak_bytes >= r.increase_bytes + 0.5 * rss_bytes() - SIZE


@pytest.mark.skipif(not _reset_hwm(), reason="this kernel refuses /proc/self/clear_refs")
@pytest.mark.parametrize("stale_thread_peak", [False, True])
def test_vmhwm_reads_the_mark_through_rusage_or_status(monkeypatch, stale_thread_peak):
    """ru_maxrss is the mark unless an exited thread left a higher one: then VmHWM."""
    import knoblab.profiling.memory as mem

    if stale_thread_peak:  # what the kernel keeps of an exited thread's peak
        real = mem._rusage_now
        monkeypatch.setattr(mem, "_rusage_now", lambda: (1 << 50, real()[1]))
    with MemorySpan("cpu", method="vmhwm") as span:
        x = _touch(SIZE)
        del x
    assert span._rusage is (not stale_thread_peak)
    r = span.result
    assert 0.95 * SIZE <= r.increase_bytes <= 1.3 * SIZE, r
    assert r.peak_bytes < 1 << 49
    assert span.cpu_s is not None and span.cpu_s > 0  # writing 160 MB takes CPU time


def test_span_cpu_time_is_this_process_s_cpu_time_inside_it():
    """cpu_s (the runner's load record per unit) follows time.process_time over the span."""
    t0 = time.process_time()
    with MemorySpan("cpu") as span:
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:  # busy: ~50 ms of CPU
            pass
    took = time.process_time() - t0
    assert span.cpu_s is not None
    assert 0.6 * took <= span.cpu_s <= took + 0.005, (span.cpu_s, took)


def test_sampled_sees_an_allocation_held_for_a_few_samples():
    with MemorySpan("cpu", method="sampled", interval_s=0.001) as span:
        x = _touch(SIZE)
        seen = span.samples
        while span.samples < seen + 3:  # held until the thread read RSS at least twice more
            time.sleep(0.001)
        del x
    r = span.result
    assert r.method == "sampled" and "every 1 ms" in r.resolution
    assert 0.95 * SIZE <= r.increase_bytes <= 1.3 * SIZE, r


def test_span_without_allocation_reports_little():
    x = _touch(SIZE)  # allocated before: not the span's
    with MemorySpan("cpu") as span:
        x.add_(1.0)  # in place: no new memory
    assert span.result.increase_bytes < 0.1 * SIZE
    del x


def test_bad_method_is_a_config_error():
    with pytest.raises(ConfigError, match="memory.method"):
        MemorySpan("cpu", method="rss")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_sees_a_freed_tensor():
    with MemorySpan("cuda") as span:
        x = torch.ones(SIZE // 4, device="cuda")
        del x
    r = span.result
    assert r.method == "cuda_max_memory_allocated"
    assert SIZE <= r.increase_bytes <= 1.05 * SIZE and r.reserved_peak_bytes >= SIZE


# -- analytic ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "layers", "dtype_bytes", "expected"),
    [
        # multi-head attention: heads = KV heads, head_dim = hidden / heads
        (SimpleNamespace(num_attention_heads=4, hidden_size=96), 4, 4, 4 * 4 * 24 * 2 * 4),
        # grouped-query attention (Qwen2.5-VL-3B-like: 16 heads, 2 KV heads, 128 dims), bf16
        (
            SimpleNamespace(num_attention_heads=16, num_key_value_heads=2, hidden_size=2048),
            36,
            2,
            36 * 2 * 128 * 2 * 2,
        ),
        # an explicit head_dim wins over hidden / heads (Qwen3, Gemma 3)
        (
            SimpleNamespace(
                num_attention_heads=8, num_key_value_heads=4, hidden_size=512, head_dim=128
            ),
            2,
            2,
            2 * 4 * 128 * 2 * 2,
        ),
        # multi-head latent attention as transformers caches it (DeepSeek-V2-Lite-like)
        (
            SimpleNamespace(
                num_attention_heads=16,
                kv_lora_rank=512,
                qk_nope_head_dim=128,
                qk_rope_head_dim=64,
                v_head_dim=128,
                hidden_size=2048,
            ),
            27,
            2,
            27 * 16 * (128 + 64 + 128) * 2,
        ),
    ],
)
def test_hf_kv_bytes_per_token_table(config, layers, dtype_bytes, expected):
    assert hf_kv_bytes_per_token(config, layers, dtype_bytes) == expected


def test_sliding_window_layers_hold_their_window():
    """Gemma-3-like: sliding layers keep the last window - 1 tokens, full layers all of them."""
    c = SimpleNamespace(
        num_attention_heads=2,
        hidden_size=64,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        sliding_window=16,
    )
    per_layer = hf_kv_bytes_per_token(c, 1, 2)
    assert hf_kv_cache_bytes(c, 3, 2, 10) == 3 * 10 * per_layer  # shorter than the window
    assert hf_kv_cache_bytes(c, 3, 2, 100) == (15 + 100 + 15) * per_layer
    assert hf_kv_cache_bytes(c, 2, 2, 100) == (15 + 100) * per_layer  # first 2 layers active
    plain = SimpleNamespace(num_attention_heads=2, hidden_size=64)
    assert hf_kv_cache_bytes(plain, 3, 2, 100) == hf_kv_bytes_per_token(plain, 3, 2) * 100


def test_cached_tokens_and_kv_cache_bytes():
    assert cached_tokens(8, 100, 4) == 111  # the last output token is never fed back
    assert cached_tokens(8, None, 1) == 8
    assert cached_tokens(None, 100, 4) is None
    adapter = SimpleNamespace(kv_cache_bytes=lambda tokens: 3072 * tokens)
    assert kv_cache_bytes(adapter, 111) == 3072 * 111
    assert kv_cache_bytes(adapter, None) is None
    assert kv_cache_bytes(object(), 111) is None  # a user adapter that does not say


def test_reference_kv_bytes_equal_its_real_cache():
    adapter = ReferenceAdapter(random_reference(seed=0))
    sample = ShapesVQA(1, seed=2)[0]
    for blocks in (4, 2):
        adapter.apply_knobs({"tier": "medium", "num_active_blocks": blocks})
        p = adapter.preprocess(sample)
        state = adapter.prefill(p, adapter.encode_vision(p))
        real = sum(k.nbytes + v.nbytes for k, v in state.cache.values())
        tokens = cached_tokens(p.input_text_tokens, p.actual_vision_tokens, 1)
        assert (
            real == kv_cache_bytes(adapter, tokens) == kv_bytes_per_token(blocks, 4, 24, 4) * tokens
        )
    assert weights_bytes(adapter) == sum(t.nbytes for t in adapter.model.state_dict().values())


def test_user_adapter_without_figures_gets_none():
    assert weights_bytes(object()) is None
    lin = torch.nn.Linear(3, 2)
    assert weights_bytes(SimpleNamespace(model=lin)) == module_bytes(lin) == (3 * 2 + 2) * 4
