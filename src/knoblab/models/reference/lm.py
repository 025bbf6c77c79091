"""The decoder-only language model: pre-norm blocks of causal attention + MoE feed-forward.

Blocks can be skipped at run time: ``active_blocks`` (a list of block indices, in
order) says which run. The reference model runs **the first n blocks**
(``active_block_indices = [0, ..., n-1]``), i.e. early exit: the final norm and the
LM head read the residual stream after block n-1. Training with a random n
(``ReferenceVLM.loss(..., num_active_blocks=...)``) keeps early exits useful.

Decoding uses a KV cache: one ``(k, v)`` pair per block, appended at each step;
``prefill`` fills it, ``decode_step`` extends it by one token.

Example:
    >>> cfg = ReferenceConfig()
    >>> lm = DecoderLM(cfg)
    >>> embeds = torch.randn(1, 5, cfg.d_model)       # (batch, tokens, d_model)
    >>> hidden, cache = lm(embeds, start_pos=0, active_blocks=[0, 1], top_k=2, use_cache=True)
    >>> lm.head(hidden).shape == (1, 5, cfg.vocab_size), sorted(cache)
    (True, [0, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from knoblab.models.reference.config import ReferenceConfig
from knoblab.models.reference.moe import MoEFeedForward

KVCache = dict[int, tuple[torch.Tensor, torch.Tensor]]


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with an optional KV cache."""

    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None = None,
        segments: list[int] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``mask``: None (causal), or an additive float ``(B, 1, T, S)`` mask (0 / -inf).
        ``segments``: the lengths of the sequences packed one after another in a batch of
        one (a packed prefill): each attends causally within its own segment only."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        if segments is not None:  # packed sequences: the batch-1 kernel on each of them
            parts = zip(
                q.split(segments, 2), k.split(segments, 2), v.split(segments, 2), strict=True
            )
            y = torch.cat([F.scaled_dot_product_attention(*p, is_causal=True) for p in parts], 2)
            return self.proj(y.transpose(1, 2).reshape(b, t, d)), (k, v)
        if mask is not None:  # a left-padded batch: the caller's mask hides the padding
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.proj(y.transpose(1, 2).reshape(b, t, d)), (k, v)
        # With a cache and one new token, the new token may see every cached one: no mask.
        # With t > 1 new tokens after a cache (not used here) the mask would need an offset.
        causal = t > 1
        if causal and past is not None:
            raise ValueError("multi-token steps after a prefill are not supported")
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, d)), (k, v)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + moe(ln(x))``."""

    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.moe = MoEFeedForward(cfg.d_model, cfg.expert_hidden, cfg.num_experts)

    def forward(
        self,
        x: torch.Tensor,
        top_k: int,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None = None,
        segments: list[int] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln1(x), past, mask, segments)
        x = x + a
        x = x + self.moe(self.ln2(x), top_k)
        return x, kv


class DecoderLM(nn.Module):
    """Token + position embeddings, ``n_layers`` blocks, final norm, tied LM head."""

    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        # Answer-step embeddings (ReferenceConfig.answer_steps); absent in reference-v1.
        self.step = nn.Embedding(cfg.answer_steps, cfg.d_model) if cfg.answer_steps else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        if self.step is not None:
            nn.init.normal_(self.step.weight, std=0.02)

    def step_embed(self, first: int, n: int, device: torch.device) -> torch.Tensor | float:
        """Embeddings of answer steps ``first .. first + n - 1`` (0 without answer steps)."""
        if self.step is None:
            return 0.0
        steps = torch.arange(first, first + n, device=device).clamp(max=self.cfg.answer_steps - 1)
        return self.step(steps)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary (the head is the transposed token embedding)."""
        return self.norm(x) @ self.embed.weight.T

    def forward(
        self,
        embeds: torch.Tensor,
        *,
        start_pos: int,
        active_blocks: Sequence[int],
        top_k: int,
        cache: KVCache | None = None,
        use_cache: bool = False,
        capture: int | None = None,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        segments: list[int] | None = None,
    ) -> tuple[torch.Tensor, KVCache | None]:
        """Hidden states ``(B, T, d_model)`` (before the head) and the updated cache.

        ``embeds`` are input embeddings (tokens and projected vision features) at
        positions ``start_pos .. start_pos + T - 1``, or at ``positions`` ``(B, T)`` per
        token (a left-padded batch: each sample counts from its own first token).
        ``mask`` (additive ``(B, 1, T, S)``) and ``segments`` (packed sequence lengths)
        go to every block's attention.
        """
        t = embeds.shape[1]
        last = start_pos + t if positions is None else int(positions.max()) + 1
        if last > self.cfg.max_seq_len:
            from knoblab.errors import DataError

            raise DataError(
                f"sequence of {last} tokens is longer than the model's max_seq_len={self.cfg.max_seq_len}"
            )
        if positions is None:
            pos = torch.arange(start_pos, start_pos + t, device=embeds.device)
            x = embeds + self.pos(pos)[None]
        else:
            x = embeds + self.pos(positions)
        new_cache: KVCache = {}
        for i in active_blocks:
            x, kv = self.blocks[i](x, top_k, cache.get(i) if cache else None, mask, segments)
            if use_cache:
                new_cache[i] = kv
            if i == capture:
                self.captured = x  # hidden states after block ``capture`` (training losses)
        return x, (new_cache if use_cache else None)
