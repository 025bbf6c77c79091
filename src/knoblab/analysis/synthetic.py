"""Synthetic sweep results with a known latency law, for tests, demos and benchmarks.

``write_synthetic_results(dir)`` writes one JSON record per configuration in the
layout of ``knoblab profile`` (seed 002's fields and file names), whose stage
latencies follow :class:`LatencyLaw` exactly (times optional multiplicative noise)
and whose accuracy follows a function of the knobs you give. The analysis must then
recover the law: linear scaling, the estimator's coefficients, the front.

NOTE: these records are made up. They exist so that analysis code can be tested
against known answers; nothing here measures a model. They are built and written by
the runner's own writer (:func:`knoblab.records.build_record`,
:func:`knoblab.records.write_record`), so they have the real record's every field and
statistic (``std`` with ``ddof=1``). Analysis tests also run on records of the real
runner (``tests/analysis/conftest.py``).

Example:
    >>> import tempfile
    >>> d = write_synthetic_results(tempfile.mkdtemp(), num_samples=8)
    >>> len(list(d.glob("*_topk*_blocks*.json")))
    18
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knoblab import records
from knoblab.records import TIERS as TIER_CROPS
from knoblab.records import record_filename

SAMPLE_METRICS = (
    "T_vision_total",
    "T_LLM_prefill",
    "T_LLM_decode",
    "T_total",
    "T_decode_per_token",
    "actual_vision_tokens",
    "input_text_tokens",
    "output_tokens",
)


@dataclass(frozen=True)
class LatencyLaw:
    """Stage latencies (ms) as a function of tokens and knobs; every term is linear in its inputs.

    With ``V`` vision tokens, ``N = V + text tokens``, ``k`` = top_k, ``B`` = active blocks
    and ``D = output_tokens - 1`` decode steps (prefill emits the first token)::

        vision  = vision_base + vision_per_token * V
        prefill = prefill_base + B * (block_base + block_per_token * N + expert_per_token * k * N)
        decode  = D * (step_base + B * (step_per_block + step_per_expert * k))
        total   = vision + prefill + decode + other
    """

    vision_base: float = 0.5
    vision_per_token: float = 0.01
    prefill_base: float = 0.3
    block_base: float = 0.02
    block_per_token: float = 0.0004
    expert_per_token: float = 0.00005
    step_base: float = 0.1
    step_per_block: float = 0.01
    step_per_expert: float = 0.004
    other: float = 0.2

    def stages(
        self, v: np.ndarray, text: np.ndarray, out: np.ndarray, top_k: int, blocks: int
    ) -> dict[str, np.ndarray]:
        n = v + text
        d = np.maximum(out - 1, 0)
        vision = self.vision_base + self.vision_per_token * v
        prefill = self.prefill_base + blocks * (
            self.block_base + self.block_per_token * n + self.expert_per_token * top_k * n
        )
        decode = d * (
            self.step_base + blocks * (self.step_per_block + self.step_per_expert * top_k)
        )
        total = vision + prefill + decode + self.other
        return {
            "T_vision_total": vision,
            "T_LLM_prefill": prefill,
            "T_LLM_decode": decode,
            "T_total": total,
        }


def default_accuracy(knobs: Mapping[str, Any]) -> float:
    """More vision tokens and more blocks help; top_k above 4 buys nothing (so it is dominated)."""
    tier = knobs.get("tier")
    vis = (
        {"low": 0.0, "medium": 0.1, "high": 0.18}[tier]
        if tier
        else 0.0002 * float(knobs["vision_tokens"])
    )
    return round(
        0.4 + vis + 0.02 * int(knobs["num_active_blocks"]) + 0.03 * min(int(knobs["top_k"]), 4) / 4,
        6,
    )


def aggregate(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = SAMPLE_METRICS
) -> dict[str, float | int | None]:
    """``<metric>_<stat>`` over the rows: :func:`knoblab.records.aggregate_stats` (the writer's)."""
    return records.aggregate_stats(rows, metrics)[0]


def write_synthetic_results(
    out_dir: str | Path,
    *,
    tiers: Sequence[str] | None = records.TIER_ORDER,
    vision_tokens: Sequence[int] | None = None,
    top_ks: Sequence[int] = (2, 4, 8),
    blocks: Sequence[int] = (4, 8),
    num_total_blocks: int | None = None,
    num_samples: int = 40,
    tokens_per_crop: int = 16,
    law: LatencyLaw | None = None,
    accuracy: Callable[[Mapping[str, Any]], float] = default_accuracy,
    noise: float = 0.0,
    seed: int = 0,
    task: str = "shapes-vqa",
    model: str = "synthetic",
) -> Path:
    """Write a full-factorial synthetic sweep to ``out_dir``; returns the directory.

    Args:
        tiers: tier values (tier mode); pass None and ``vision_tokens`` for target-tokens mode.
        noise: relative standard deviation of log-normal timing noise (0 = exact law).
        accuracy: the configuration's accuracy given its knobs; per-sample scores are 0/1
            (one of them fractional) whose mean is exactly that value.
    """
    law = law or LatencyLaw()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = _Samples(
        aspect=rng.uniform(1 / 3, 3, num_samples),  # width / height of each image
        text=rng.integers(8, 24, num_samples),
        out_tok=rng.integers(1, 6, num_samples),
        invalid=rng.integers(0, 3, num_samples),  # padding patches marked -100
    )
    num_total_blocks = num_total_blocks or max(blocks)
    vision_values: list[tuple[str, Any]] = (
        [("tier", t) for t in tiers]
        if tiers
        else [("vision_tokens", int(t)) for t in vision_tokens or ()]
    )
    for (vkey, vval), k, b in itertools.product(vision_values, top_ks, blocks):
        knobs = {vkey: vval, "top_k": int(k), "num_active_blocks": int(b)}
        crops = _crops(vkey, vval, samples.aspect, tokens_per_crop)
        target = (crops + 1) * tokens_per_crop
        actual = target - samples.invalid
        t = law.stages(
            actual.astype(float),
            samples.text.astype(float),
            samples.out_tok.astype(float),
            int(k),
            int(b),
        )
        if noise:
            t = {key: val * rng.lognormal(0.0, noise, num_samples) for key, val in t.items()}
            t["T_total"] = np.maximum(
                t["T_total"], t["T_vision_total"] + t["T_LLM_prefill"] + t["T_LLM_decode"]
            )
        hits = _scores(accuracy(knobs), num_samples, rng)
        rows = _rows(samples, knobs, crops, target, actual, t, hits)
        record = records.build_record(
            task=task,
            model=model,
            knobs=knobs,
            effective=_effective(knobs, num_total_blocks),
            rows=rows,
            status="ok",
            error=None,
            environment={"device": "synthetic", "seed": seed},
            sampling={"sample_ids": list(range(num_samples)), "synthetic": True},
        )
        records.write_record(out, record)
    records.write_json_atomic(out / "environment.json", {"device": "synthetic", "seed": seed})
    return out


@dataclass(frozen=True)
class _Samples:
    """The made-up samples, the same in every configuration (as a real sweep's)."""

    aspect: np.ndarray  # width / height of each image
    text: np.ndarray  # prompt text tokens
    out_tok: np.ndarray  # generated tokens
    invalid: np.ndarray  # padding patches marked -100


def _crops(vkey: str, vval: Any, aspect: np.ndarray, tokens_per_crop: int) -> np.ndarray:
    """Crops per sample: within the tier by aspect ratio, or the target-tokens count."""
    if vkey == "tier":
        lo, hi = TIER_CROPS[vval]
        # wider images get more crops within the tier, as select_tiling would
        return np.clip(
            np.round(lo + (hi - lo) * (np.log(aspect) / np.log(9) + 0.5)), lo, hi
        ).astype(int)
    return np.full(len(aspect), max(int(vval) // tokens_per_crop - 1, 1))


def _scores(acc: float, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """0/1 scores plus one partial score (VQA accuracy is fractional): the mean is exactly ``acc``."""
    hits = np.zeros(num_samples)
    whole = int(np.floor(acc * num_samples))
    hits[:whole] = 1.0
    if whole < num_samples:
        hits[whole] = acc * num_samples - whole
    rng.shuffle(hits)
    return hits


def _rows(
    samples: _Samples,
    knobs: Mapping[str, Any],
    crops: np.ndarray,
    target: np.ndarray,
    actual: np.ndarray,
    t: Mapping[str, np.ndarray],
    hits: np.ndarray,
) -> list[dict[str, Any]]:
    """The per-sample rows of one configuration, as the runner writes them."""
    rows = []
    for i in range(len(hits)):
        steps = int(samples.out_tok[i]) - 1
        rows.append(
            {
                "sample_id": i,
                "target_vision_tokens": int(target[i]),
                "target_crops": int(crops[i]),
                "actual_vision_tokens": int(actual[i]),
                "top_k": int(knobs["top_k"]),
                "num_active_blocks": int(knobs["num_active_blocks"]),
                "input_text_tokens": int(samples.text[i]),
                "output_tokens": int(samples.out_tok[i]),
                "accuracy": float(hits[i]),
                "pred": "yes" if hits[i] else "no",
                "T_vision_total": float(t["T_vision_total"][i]),
                "T_LLM_prefill": float(t["T_LLM_prefill"][i]),
                "T_LLM_decode": float(t["T_LLM_decode"][i]),
                "T_total": float(t["T_total"][i]),
                "T_decode_per_token": float(t["T_LLM_decode"][i] / steps) if steps > 0 else None,
                "actual_num_crops": int(crops[i]),
                "status": "ok",
                "error": None,
                "dataset_index": i,
            }
        )
    return rows


def _effective(knobs: Mapping[str, Any], num_total_blocks: int) -> dict[str, Any]:
    """The record's ``effective`` knob values (active blocks, the tier's crop range)."""
    b = int(knobs["num_active_blocks"])
    tier = knobs.get("tier")
    return {
        "top_k": int(knobs["top_k"]),
        "num_active_blocks": b,
        "num_total_blocks": int(num_total_blocks),
        "active_block_indices": list(range(b)),
        "tier_range": (
            {"min_crops": TIER_CROPS[tier][0], "max_crops": TIER_CROPS[tier][1]}
            if tier is not None
            else None
        ),
    }


__all__ = [
    "LatencyLaw",
    "TIER_CROPS",
    "aggregate",
    "default_accuracy",
    "record_filename",
    "write_synthetic_results",
]
