"""A synthetic model with known stage costs, and an in-memory dataset, for tests and benchmarks.

``WaitAdapter`` implements the adapter protocol without a network: each stage waits a
known time that depends on the knobs, so the truth of every latency is known
(``benchmarks/bench_timing_truth.py``), and its answers get better with costlier knobs,
so a sweep has a real accuracy/latency trade-off. It can be told to fail on chosen
samples (a corrupt image) and to run out of memory at chosen settings.

NOTE: ``wait="busy"`` spins on ``time.perf_counter`` (exact, burns a core: for timing
benchmarks); ``wait="sleep"`` calls ``time.sleep`` (cheap on shared CI machines, but
the OS may oversleep by ~0.1 ms).

Example:
    >>> ds = ListDataset.synthetic(4)
    >>> ad = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0)
    >>> ad.apply_knobs({"tier": "high"})["num_total_blocks"]
    6
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from knoblab.data.sample import Sample
from knoblab.errors import DataError
from knoblab.models.adapter import Generation, KnobSpec, Prepared, check_knob
from knoblab.records import TIERS

TIER_CROPS = dict(TIERS)


@dataclass
class ListDataset:
    """A ``VQADataset`` over a list of samples."""

    samples: list[Sample]
    name: str = "synthetic"
    metric: str = "exact_match"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[int(index)]

    @classmethod
    def synthetic(cls, n: int, name: str = "synthetic") -> ListDataset:
        """``n`` samples whose answer is ``str(sample_id % 7)``, images of varying aspect."""
        samples = [
            Sample(
                sample_id=i,
                question=f"what is {i} mod 7?",
                answers=[str(i % 7)],
                image=(32 + 16 * (i % 3), 32 + 16 * (i % 5)),  # (h, w): no pixels needed
                image_id=f"img-{i}",
                metadata={"group": i % 2},
            )
            for i in range(n)
        ]
        return cls(samples, name=name)


@dataclass
class WaitAdapter:
    """A model whose stages wait known times (ms) scaled by the knobs.

    vision: ``vision_ms * crops`` (crops from the tier: the middle of its range, or
    ``vision_tokens // 144 - 1``); prefill: ``prefill_ms * num_active_blocks / 2``;
    decode: ``decode_ms * (output_tokens - 1) * top_k``. A sample is answered
    correctly when ``sample_id % 4 < quality`` with ``quality`` the number of knobs at
    their top value plus one.

    Args:
        fail_samples: sample ids whose preprocessing raises ``DataError``.
        oom_when: a knob setting (subset) at which prefill raises ``torch.OutOfMemoryError``.
        output_tokens: tokens generated per answer (the first by prefill).
    """

    vision_ms: float = 1.0
    prefill_ms: float = 1.0
    decode_ms: float = 1.0
    output_tokens: int = 3
    wait: str = "sleep"
    fail_samples: Sequence[int] = ()
    oom_when: Mapping[str, Any] | None = None
    name: str = "wait-adapter"
    device: str = "cpu"
    dtype: str = "float32"
    tiers: Sequence[str] = tuple(TIERS)
    top_ks: Sequence[int] = (1, 2, 4)
    blocks: Sequence[int] = (2, 4, 6)
    vision_tokens: Sequence[int] = (288, 576, 1008)
    settings: dict[str, Any] = field(default_factory=dict)
    calls: int = 0

    def knobs(self) -> dict[str, KnobSpec]:
        return {
            "tier": KnobSpec("tier", tuple(self.tiers), self.tiers[0], "crops range per image"),
            "vision_tokens": KnobSpec(
                "vision_tokens", tuple(self.vision_tokens), None, "target vision tokens"
            ),
            "top_k": KnobSpec(
                "top_k", tuple(self.top_ks), self.top_ks[-1], "MoE experts per token"
            ),
            "num_active_blocks": KnobSpec(
                "num_active_blocks", tuple(self.blocks), self.blocks[-1], "blocks run"
            ),
        }

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        specs = self.knobs()
        for k, v in settings.items():
            check_knob(specs, k, v, self.name)
        self.settings = {k: spec.default for k, spec in specs.items()} | dict(settings)
        if "vision_tokens" in settings:
            self.settings["tier"] = None
        n = self.settings["num_active_blocks"]
        out = {
            "top_k": self.settings["top_k"],
            "num_active_blocks": n,
            "num_total_blocks": max(self.blocks),
            "active_block_indices": list(range(n)),
        }
        if self.settings.get("tier"):
            lo, hi = TIER_CROPS[self.settings["tier"]]
            out |= {"tier_range": {"min_crops": lo, "max_crops": hi}, "max_crops": hi}
        return out

    def _crops(self) -> int:
        if self.settings.get("vision_tokens"):
            return max(1, self.settings["vision_tokens"] // 144 - 1)
        lo, hi = TIER_CROPS[self.settings["tier"]]
        return (lo + hi) // 2

    def preprocess(self, sample: Sample) -> Prepared:
        if sample.sample_id in self.fail_samples:
            raise DataError(f"cannot decode image of sample {sample.sample_id} (corrupt file)")
        crops = self._crops()
        return Prepared(
            inputs=sample,
            input_text_tokens=len(sample.question.split()),
            actual_vision_tokens=(crops + 1) * 144 - (sample.sample_id % 3) * 8,
            theoretical_vision_tokens=(crops + 1) * 144,
            target_vision_tokens=self.settings.get("vision_tokens"),
            num_crops=crops,
            tiling=(1, crops),
            image_size=(32, 32 * crops),
        )

    def _wait(self, ms: float) -> None:
        if ms <= 0:
            return
        if self.wait == "busy":
            end = time.perf_counter() + ms / 1000.0
            while time.perf_counter() < end:
                pass
        else:
            time.sleep(ms / 1000.0)

    def encode_vision(self, prepared: Prepared) -> Any:
        self._wait(self.vision_ms * (prepared.num_crops or 1))
        return prepared.num_crops

    def prefill(self, prepared: Prepared, vision: Any) -> Any:
        self.calls += 1
        if self.oom_when and all(self.settings.get(k) == v for k, v in self.oom_when.items()):
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (synthetic)"
            )
        self._wait(self.prefill_ms * self.settings["num_active_blocks"] / 2)
        return prepared.inputs

    def decode(self, state: Any, max_new_tokens: int) -> Generation:
        sample: Sample = state
        n = min(self.output_tokens, max_new_tokens)
        self._wait(self.decode_ms * max(n - 1, 0) * self.settings["top_k"])
        specs = self.knobs()
        quality = 1 + sum(
            1
            for k in ("tier", "top_k", "num_active_blocks")
            if self.settings.get(k) is not None and self.settings[k] == specs[k].values[-1]
        )
        text = sample.answers[0] if sample.sample_id % 4 < quality else "unknown"
        return Generation(token_ids=list(range(n)), text=text)


def build_adapter(cfg: Mapping[str, Any]) -> WaitAdapter:
    """``WaitAdapter`` from a ``model`` config section (its fields as keys; others ignored)."""
    fields = WaitAdapter.__dataclass_fields__
    return WaitAdapter(
        **{k: v for k, v in cfg.items() if k in fields and k not in ("settings", "calls")}
    )


def build_dataset(cfg: Mapping[str, Any]) -> ListDataset:
    """``ListDataset.synthetic(cfg.size)`` named ``cfg.name``; ``size: 0`` gives an empty one."""
    return ListDataset.synthetic(int(cfg.get("size", 8)), name=str(cfg.get("name", "synthetic")))
