"""Mixture-of-experts feed-forward with a run-time ``top_k``.

A linear router scores the ``num_experts`` experts for every token; the token goes to
its ``top_k`` best experts, whose outputs are mixed by the softmax of their router
logits (renormalised over the chosen k, as Mixtral). ``top_k`` is an argument of
``forward``, so the knob changes between calls without touching the weights.

Cost grows with ``top_k``: each expert runs on the tokens routed to it, so the expert
matmuls process ``top_k * tokens`` rows in all.

NOTE: in training mode the experts run densely (every expert on every token, gated
by zeros): the output is the same, the backward pass is much faster on CPU. In eval
mode dispatch is sparse, so latency measures the real cost of ``top_k``. Set
``moe.dense`` to force either.

``last_tokens_per_expert`` (tokens routed to each expert by the last call) and
``last_aux_loss`` (the Switch-Transformer load-balancing loss, for training) are kept
on the module after every forward; they are diagnostics, not state.

Example:
    >>> moe = MoEFeedForward(128, 256, num_experts=4)
    >>> moe(torch.randn(1, 10, 128), top_k=2).shape
    torch.Size([1, 10, 128])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MoEFeedForward(nn.Module):
    """Router + ``num_experts`` GELU MLP experts (weights stacked for compactness)."""

    def __init__(self, d_model: int, hidden: int, num_experts: int):
        super().__init__()
        self.num_experts = num_experts
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.w_in = nn.Parameter(torch.randn(num_experts, d_model, hidden) * d_model**-0.5)
        self.b_in = nn.Parameter(torch.zeros(num_experts, hidden))
        self.w_out = nn.Parameter(torch.randn(num_experts, hidden, d_model) * hidden**-0.5 * 0.5)
        self.b_out = nn.Parameter(torch.zeros(num_experts, d_model))
        self.last_tokens_per_expert: torch.Tensor | None = None
        self.last_aux_loss: torch.Tensor | None = None
        #: None: dense dispatch in training, sparse at inference; True/False forces one.
        self.dense: bool | None = None

    def _sparse(
        self, flat: torch.Tensor, top_idx: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each expert runs on its own tokens only: cost grows with ``top_k``."""
        counts = torch.zeros(self.num_experts, dtype=torch.long)
        if flat.shape[0] == 1:
            # One token (a decode step): run its k experts directly, no index bookkeeping.
            y = torch.zeros_like(flat)
            for j, e in enumerate(top_idx[0].tolist()):
                h = F.gelu(flat @ self.w_in[e] + self.b_in[e])
                y = y + (h @ self.w_out[e] + self.b_out[e]) * weights[0, j]
                counts[e] += 1
            return y, counts
        out = torch.zeros_like(flat)
        for e in range(self.num_experts):
            tok, slot = (top_idx == e).nonzero(as_tuple=True)
            counts[e] = tok.numel()
            if tok.numel() == 0:
                continue
            h = F.gelu(flat[tok] @ self.w_in[e] + self.b_in[e])
            y = h @ self.w_out[e] + self.b_out[e]
            out.index_add_(0, tok, y * weights[tok, slot, None])
        return out, counts

    def _dense(
        self, flat: torch.Tensor, top_idx: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every expert on every token, unselected ones weighted 0: the same output.

        Why: on CPU the gathers and scatter-adds of sparse dispatch cost more in the
        backward pass than the extra expert FLOPs of a small model (profiled: 10x).
        """
        gate = torch.zeros(flat.shape[0], self.num_experts, dtype=flat.dtype, device=flat.device)
        gate.scatter_(1, top_idx, weights)
        h = F.gelu(torch.einsum("td,edh->eth", flat, self.w_in) + self.b_in[:, None, :])
        y = torch.einsum("eth,ehd->etd", h, self.w_out) + self.b_out[:, None, :]
        out = torch.einsum("etd,te->td", y, gate)
        counts = torch.bincount(top_idx.flatten().cpu(), minlength=self.num_experts)
        return out, counts

    def forward(self, x: torch.Tensor, top_k: int) -> torch.Tensor:
        if not 1 <= top_k <= self.num_experts:
            from knoblab.errors import ConfigError

            raise ConfigError("knobs.top_k", top_k, f"1..{self.num_experts}")
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits = self.router(flat)
        top_logits, top_idx = logits.topk(top_k, dim=-1)  # (T, k)
        weights = top_logits.softmax(dim=-1).to(flat.dtype)
        dense = self.dense if self.dense is not None else self.training
        if dense:
            out, counts = self._dense(flat, top_idx, weights)
        else:
            out, counts = self._sparse(flat, top_idx, weights)
        self.last_tokens_per_expert = counts
        if self.training:
            # Switch load balancing: E * sum_e (fraction routed to e) * (mean router prob of e).
            probs = logits.float().softmax(dim=-1)
            frac = counts.to(probs.device, probs.dtype) / max(1, flat.shape[0] * top_k)
            self.last_aux_loss = self.num_experts * (frac * probs.mean(0)).sum()
        return out.reshape(shape)
