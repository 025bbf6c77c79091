"""Analytic memory of a model: KV-cache bytes per token and the weights' bytes.

Used by the adapters (``kv_cache_bytes_per_token()``, ``weights_bytes()``) and by
``knoblab.profiling.memory``, which records them next to the measured peak.

Example:
    >>> kv_bytes_per_token(layers=4, kv_heads=4, head_dim=24, dtype_bytes=4)
    3072
"""

from __future__ import annotations

from typing import Any

import torch


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    """KV-cache bytes one token costs: layers x KV heads x head dim x 2 (K, V) x dtype bytes."""
    return int(layers) * int(kv_heads) * int(head_dim) * 2 * int(dtype_bytes)


def hf_kv_bytes_per_token(text_config: Any, layers: int, dtype_bytes: int) -> int:
    """KV bytes per token of a Hugging Face decoder (``config.get_text_config()``).

    KV heads: ``num_key_value_heads`` (grouped-query attention), else
    ``num_attention_heads``; head dim: ``head_dim``, else ``hidden_size /
    num_attention_heads``. Multi-head latent attention (``kv_lora_rank``, DeepSeek) is
    counted as transformers caches it: per head ``qk_nope + qk_rope`` key dims and
    ``v_head_dim`` value dims.
    NOTE: this is the full-attention figure; :func:`hf_kv_cache_bytes` counts
    sliding-window layers (Gemma 3) as holding fewer tokens.
    """
    c = text_config
    heads = int(c.num_attention_heads)
    if getattr(c, "kv_lora_rank", None):
        k_dim = int(c.qk_nope_head_dim) + int(c.qk_rope_head_dim)
        return int(layers) * heads * (k_dim + int(c.v_head_dim)) * int(dtype_bytes)
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or int(c.hidden_size) // heads
    return kv_bytes_per_token(layers, kv_heads, head_dim, dtype_bytes)


def module_bytes(*modules: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers of ``modules`` (each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for m in modules:
        for t in (*m.parameters(), *m.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def hf_kv_cache_bytes(text_config: Any, layers: int, dtype_bytes: int, tokens: int) -> int:
    """KV bytes a sequence of ``tokens`` holds in the first ``layers`` decoder layers.

    A layer whose ``layer_types`` entry is ``sliding_attention`` keeps only the last
    ``sliding_window - 1`` tokens (as transformers' ``DynamicSlidingWindowLayer`` does
    between steps); every other layer keeps all ``tokens``.
    """
    per_layer = hf_kv_bytes_per_token(text_config, 1, dtype_bytes)
    kinds = list(getattr(text_config, "layer_types", None) or [])
    window = getattr(text_config, "sliding_window", None)
    total = 0
    for i in range(int(layers)):
        sliding = i < len(kinds) and kinds[i] == "sliding_attention" and window
        total += per_layer * (min(int(tokens), int(window) - 1) if sliding else int(tokens))
    return total
