"""Hugging Face adapters switch knobs in place: the same answers interleaved or sequential.

A dense (Qwen2.5-VL) and an MoE (Qwen3-VL-MoE) tiny checkpoint, each swept twice by
the real runner: once interleaved (knobs switch back and forth every sample) and once
sequentially (one switch per configuration). Greedy decoding is deterministic, so any
state a switch leaves behind (layers, router top-k, the processor's pixel budget)
shows as a different answer or token count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from knoblab.data.registry import build_dataset
from knoblab.models.hf.tiny import write_tiny_checkpoint
from knoblab.models.registry import build_adapter
from knoblab.profiling import records as rec
from knoblab.profiling.runner import run_sweep


def _dataset(root: Path) -> dict[str, Any]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (color, size) in enumerate([((220, 30, 30), (96, 64)), ((30, 30, 220), (64, 128))]):
        Image.new("RGB", size, color).save(root / "images" / f"{i}.png")
        lines.append(
            json.dumps(
                {"sample_id": i, "image": f"images/{i}.png", "question": "what color ?",
                 "answers": ["red"]}
            )
        )  # fmt: skip
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return {"format": "jsonl", "path": str(root / "manifest.jsonl"), "name": "tiny"}


@pytest.mark.parametrize(
    ("family", "knobs"),
    [
        ("qwen2_5_vl", {"vision_tokens": [4, 64], "num_active_blocks": [1, 2]}),
        ("qwen3_vl_moe", {"vision_tokens": [4, 64], "top_k": [1, 2], "num_active_blocks": [1, 2]}),
    ],
)
def test_hf_answers_are_the_same_interleaved_or_sequential(
    tmp_path: Path, family: str, knobs: dict[str, Any]
) -> None:
    ckpt = write_tiny_checkpoint(family, tmp_path / "ckpt")
    dataset_cfg = _dataset(tmp_path / "data")
    hardware = {"device": "cpu", "num_threads": 1, "tf32": False}
    adapter = build_adapter({"kind": "hf", "path": str(ckpt), "dtype": "fp32"}, hardware)
    answers = {}
    for mode in ("interleaved", "sequential"):
        cfg = {
            "dataset": {**dataset_cfg, "sampling": {"num_samples_per_epoch": 2, "seed": 1}},
            "knobs": knobs,
            "design": {"name": "full"},
            "run": {"output_dir": str(tmp_path / mode), "warmup_runs": 1, "progress": False,
                    "schedule": mode, "max_new_tokens": 4},
        }  # fmt: skip
        res = run_sweep(cfg, adapter=adapter, dataset=build_dataset(dataset_cfg))
        assert {r["status"] for r in res.records.values()} == {"ok"}
        answers[mode] = {
            rec.config_key(r["knobs"]): [
                (s["sample_id"], s["pred"], s["output_tokens"], s["actual_vision_tokens"])
                for s in r["per_sample_results"]
            ]
            for r in res.records.values()
        }
    assert len(answers["interleaved"]) == 2 ** len(knobs)
    assert answers["interleaved"] == answers["sequential"]
    tokens = {v[0][3] for v in answers["interleaved"].values()}
    assert len(tokens) > 1  # the vision-token knob did act: the comparison can fail
