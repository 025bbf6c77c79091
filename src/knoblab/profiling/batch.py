"""One timed batch: TTFT, TPOT, the inter-token latencies and throughput of a padded batch.

:func:`measure_batch` runs ``len(prepared)`` preprocessed samples as one batch through
an adapter's batched stages (``knoblab.models.adapter.BatchedAdapter``) and times the
vision stage, the prefill and every decode step with one clock (CUDA events on GPU,
read with ONE synchronize at the end; ``time.perf_counter`` on CPU).

The figures follow vLLM's definitions (https://docs.vllm.ai/en/latest/design/metrics.html
and ``vllm bench serve``'s ``benchmark_serving.py``), for requests that all arrive at
the batch's start:

* **TTFT** (time to first token) = ``T_vision_total + T_LLM_prefill``: the prefill
  yields token 1 (``T_ttft``).
* **ITL** (inter-token latency) = the time of each decode step that gave the sample a
  token; sample i with ``n_i`` output tokens has ``n_i - 1`` of them (``itl_ms``).
* **TPOT** (time per output token, first excluded) = ``(e2e - TTFT) / (n_i - 1)`` = the
  mean of its ITLs; undefined (None) for a one-token answer (``T_tpot``, the same value
  as ``T_decode_per_token``).
* **e2e request latency** = ``TTFT + sum(ITL)``: when the sample's last token came out
  (``T_total``); ``T_LLM_decode`` is its ``sum(ITL)``.
* **throughput** = samples (and generated tokens) over the batch's wall time, first
  mark to last (``throughput_samples_s``, ``throughput_tokens_s``).

NOTE: an adapter without batched stages still runs at any batch size: its samples run
one after another, each timed as at batch 1 (``batched: False``); its ``itl_ms`` is None
(its ``decode`` gives no per-step time) and its throughput is that of the sequence.

Example:
    >>> from knoblab.data.shapes import ShapesVQA
    >>> from knoblab.models.registry import build_adapter
    >>> adapter = build_adapter({"kind": "reference"})
    >>> samples = [ShapesVQA(8)[i] for i in range(4)]
    >>> m = measure_batch(adapter, [adapter.preprocess(s) for s in samples], max_new_tokens=4)
    >>> m.rows()[0]["T_ttft"] > 0, m.throughput_samples_s > 0
    (True, True)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from knoblab.models.adapter import Generation, Prepared, supports_batching
from knoblab.profiling.memory import MemoryResult, cached_tokens, kv_cache_bytes, weights_bytes


@functools.lru_cache(maxsize=16)
def _device(device: str | torch.device) -> tuple[torch.device, bool]:
    """(the device, whether it is a CUDA device here): parsed once, not per batch."""
    dev = torch.device(device)
    return dev, dev.type == "cuda" and torch.cuda.is_available()


class _Clock:
    """Time marks: CUDA events on GPU (one synchronize in :meth:`read`), perf_counter on CPU."""

    def __init__(self, device: str | torch.device):
        self.device, self.cuda = _device(device)
        self._marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append(event)
        else:
            self._marks.append(time.perf_counter())

    def read(self) -> list[float]:
        """Milliseconds from the first mark to each mark."""
        if not self._marks:
            return []
        if self.cuda:
            torch.cuda.synchronize(self.device)
            first = self._marks[0]
            return [float(first.elapsed_time(e)) if e is not first else 0.0 for e in self._marks]
        return [(t - self._marks[0]) * 1000.0 for t in self._marks]


@dataclass
class BatchMeasurement:
    """What one timed batch measured; :meth:`rows` gives the per-sample fields.

    Attributes:
        generations: each sample's answer, in batch order.
        batched: True when the batch ran as one padded batch; False when the adapter has
            no batched stages and the samples ran one after another.
        T_vision_total, T_LLM_prefill: the batch's stage times in ms (summed over the
            samples when not batched).
        step_ms: each decode step's time in ms (empty when not batched).
        wall_ms: the batch's wall time, first mark to last.
        per_sample: per sample ``T_vision_total``, ``T_LLM_prefill``, ``T_LLM_decode``,
            ``T_total``, ``T_ttft``, ``T_tpot``, ``T_decode_per_token``, ``itl_ms``,
            ``output_tokens``, and the analytic ``kv_cache_bytes`` (this sample's
            sequence, unpadded: a padded batch holds batch x its longest) and
            ``weights_bytes`` (None where the adapter does not say).
        energy_j: joules over the batch (None when unavailable), and
            ``energy_unavailable_reason``.
    """

    generations: list[Generation]
    batched: bool
    T_vision_total: float
    T_LLM_prefill: float
    step_ms: list[float]
    wall_ms: float
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    energy_j: float | None = None
    energy_unavailable_reason: str | None = None

    @property
    def batch_size(self) -> int:
        return len(self.generations)

    @property
    def output_tokens(self) -> int:
        return sum(g.output_tokens for g in self.generations)

    @property
    def throughput_samples_s(self) -> float | None:
        return self.batch_size / (self.wall_ms / 1000.0) if self.wall_ms > 0 else None

    @property
    def throughput_tokens_s(self) -> float | None:
        return self.output_tokens / (self.wall_ms / 1000.0) if self.wall_ms > 0 else None

    def rows(self) -> list[dict[str, Any]]:
        """Per sample: its latencies plus the batch's throughput, batch size and energy share.

        NOTE: the batch's energy is split over its samples equally (``energy_j``) and
        over its generated tokens (``energy_j_per_token``); a meter cannot tell which
        sample of a batch drew which joule.
        """
        tokens, size = self.output_tokens, self.batch_size
        shared = {  # the batch's figures, computed once for all its samples
            "batch_size": size,
            "batched": self.batched,
            "throughput_samples_s": self.throughput_samples_s,
            "throughput_tokens_s": self.throughput_tokens_s,
            "energy_j": None if self.energy_j is None else self.energy_j / size,
            "energy_j_per_token": (
                None if self.energy_j is None or not tokens else self.energy_j / tokens
            ),
            "energy_unavailable_reason": self.energy_unavailable_reason,
        }
        for s in self.per_sample:  # in place (the same values on every call)
            s.update(shared)
        return list(self.per_sample)


def _sample_figures(
    vision_ms: float, prefill_ms: float, itl: list[float] | None, decode_ms: float, n: int
) -> dict:
    """One sample's stage times and TTFT / TPOT / ITL / e2e fields (vLLM's definitions,
    module docstring)."""
    ttft = vision_ms + prefill_ms
    tpot = decode_ms / (n - 1) if n > 1 else None
    return {
        "T_vision_total": vision_ms,
        "T_LLM_prefill": prefill_ms,
        "T_LLM_decode": decode_ms,
        "T_total": ttft + decode_ms,
        "T_ttft": ttft,
        "T_tpot": tpot,
        "T_decode_per_token": tpot,
        "itl_ms": itl,
        "output_tokens": n,
    }


def _batched(
    adapter: Any, prepared: Sequence[Prepared], max_new_tokens: int, clock: _Clock
) -> BatchMeasurement:
    batch = adapter.collate(prepared)  # untimed, as preprocess
    clock.mark()
    vision = adapter.encode_vision_batch(batch)
    clock.mark()
    state = adapter.prefill_batch(batch, vision, max_new_tokens)
    clock.mark()
    steps = 0
    while not all(state.finished):
        adapter.decode_step_batch(state)
        clock.mark()
        steps += 1
        if steps > max_new_tokens:  # a broken adapter that never finishes a sample
            raise RuntimeError(
                f"adapter {getattr(adapter, 'name', '?')}: decode_step_batch ran {steps} steps "
                f"without finishing every sample (max_new_tokens={max_new_tokens})"
            )
    gens = adapter.finish_batch(state)
    t = clock.read()
    vision_ms, prefill_ms = t[1] - t[0], t[2] - t[1]
    step_ms = [b - a for a, b in zip(t[2:-1], t[3:], strict=True)]
    per = []
    for g in gens:
        itl = step_ms[: max(0, g.output_tokens - 1)]
        per.append(_sample_figures(vision_ms, prefill_ms, itl, float(sum(itl)), g.output_tokens))
    return BatchMeasurement(gens, True, vision_ms, prefill_ms, step_ms, t[-1], per)


def _looped(
    adapter: Any, prepared: Sequence[Prepared], max_new_tokens: int, clock: _Clock
) -> BatchMeasurement:
    gens, per = [], []
    for p in prepared:
        clock.mark()
        vision = adapter.encode_vision(p)
        clock.mark()
        state = adapter.prefill(p, vision)
        clock.mark()
        gens.append(adapter.decode(state, max_new_tokens))
        clock.mark()
    t = clock.read()
    vision_ms = prefill_ms = 0.0
    for i, g in enumerate(gens):
        a, b, c, d = t[4 * i : 4 * i + 4]
        per.append(_sample_figures(b - a, c - b, None, d - c, g.output_tokens))
        vision_ms += b - a
        prefill_ms += c - b
    return BatchMeasurement(gens, False, vision_ms, prefill_ms, [], t[-1], per)


def measure_batch(
    adapter: Any,
    prepared: Sequence[Prepared],
    max_new_tokens: int,
    *,
    device: str | torch.device | None = None,
    energy: Any = None,
    weights: int | None | type[Ellipsis] = ...,  # type: ignore[valid-type]
    batched: bool | None = None,
) -> BatchMeasurement:
    """Run and time ``prepared`` as one batch (see the module docstring).

    Args:
        adapter: a ``ModelAdapter``; its batched stages are used when it has all of them.
        prepared: the batch's samples, each from ``adapter.preprocess`` (not timed here).
        max_new_tokens: the cap on each sample's output tokens (token 1 included).
        device: where the model runs (default ``adapter.device``): CUDA events there.
        energy: an ``knoblab.profiling.energy.EnergyMeter`` read around the batch, or None.
        weights: the model's weight bytes when the caller knows them (the runner: once
            per configuration; walking the parameters costs ~0.7 ms); default: computed.
        batched: whether ``adapter`` has the batched stages (the runner asks once per
            sweep); default: :func:`~knoblab.models.adapter.supports_batching`.

    Returns:
        A :class:`BatchMeasurement`; ``.rows()`` are the per-sample fields.
    """
    if not prepared:
        raise ValueError("measure_batch needs at least one prepared sample")
    clock = _Clock(device if device is not None else getattr(adapter, "device", "cpu"))
    span = energy.start() if energy is not None else None
    if batched is None:
        batched = supports_batching(adapter)
    run = _batched if batched else _looped
    with torch.inference_mode():
        m = run(adapter, prepared, max_new_tokens, clock)
    if energy is not None:
        m.energy_j, m.energy_unavailable_reason = energy.stop(span)
    else:
        m.energy_unavailable_reason = "no energy meter was given"
    if weights is ...:
        weights = weights_bytes(adapter)
    for row, p in zip(m.per_sample, prepared, strict=True):
        tokens = cached_tokens(p.input_text_tokens, p.actual_vision_tokens, row["output_tokens"])
        row["kv_cache_bytes"] = kv_cache_bytes(adapter, tokens)
        row["weights_bytes"] = weights
    return m


def set_peak_memory(rows: Sequence[dict[str, Any]], result: MemoryResult | None) -> None:
    """Put a configuration's measured peak (``MemorySpan.result``) on each of its rows."""
    for row in rows:
        row["peak_memory_bytes"] = None if result is None else result.peak_bytes
