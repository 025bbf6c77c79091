"""A real sweep (knoblab.profiling.runner) over a tiny HF MoE VLM and a JSONL dataset on disk."""

from __future__ import annotations

import json

from PIL import Image

from knoblab.data.registry import build_dataset
from knoblab.models.hf.tiny import write_tiny_checkpoint
from knoblab.models.registry import build_adapter
from knoblab.profiling.runner import run_sweep


def test_sweep_two_values_of_each_knob(tmp_path):
    ckpt = write_tiny_checkpoint("qwen3_vl_moe", tmp_path / "ckpt")
    lines = []
    for i, color in enumerate([(220, 30, 30), (30, 30, 220)]):
        (tmp_path / "data" / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 64), color).save(tmp_path / "data" / "images" / f"{i}.png")
        rec = {
            "sample_id": i,
            "image": f"images/{i}.png",
            "question": "what color ?",
            "answers": ["red"],
        }
        lines.append(json.dumps(rec))
    (tmp_path / "data" / "manifest.jsonl").write_text("\n".join(lines) + "\n")

    dataset_cfg = {
        "format": "jsonl",
        "path": str(tmp_path / "data" / "manifest.jsonl"),
        "name": "tiny",
    }
    hardware = {"device": "cpu", "num_threads": 1, "tf32": False}
    adapter = build_adapter({"kind": "hf", "path": str(ckpt), "dtype": "fp32"}, hardware)
    knobs = {"vision_tokens": [4, 64], "top_k": [1, 2], "num_active_blocks": [1, 2]}
    cfg = {
        "dataset": {
            **dataset_cfg,
            "sampling": {"num_samples_per_epoch": 1, "num_epochs": 1, "seed": 1},
        },
        "knobs": knobs,
        "design": {"name": "full"},
        "run": {
            "output_dir": str(tmp_path / "out"),
            "warmup_runs": 1,
            "num_runs_per_sample": 1,
            "progress": False,
        },
    }
    res = run_sweep(cfg, adapter=adapter, dataset=build_dataset(dataset_cfg))
    assert len(res.ran) == 8
    seen = set()
    for r in res.records.values():
        assert r["status"] == "ok" and r["num_samples"] == 1
        seen.add((r["knobs"]["vision_tokens"], r["top_k"], r["num_active_blocks"]))
        assert r["num_total_blocks"] == 2
        assert r["active_block_indices"] == list(range(r["num_active_blocks"]))
        for s in r["per_sample_results"]:
            assert s["T_total"] > 0 and s["T_vision_total"] > 0 and s["T_LLM_prefill"] > 0
            assert 0 < s["actual_vision_tokens"] <= r["knobs"]["vision_tokens"]
            assert 0.0 <= s["accuracy"] <= 1.0
    assert seen == {(v, k, b) for v in (4, 64) for k in (1, 2) for b in (1, 2)}


def test_hf_knob_preset_composes_and_fits_a_checkpoint(tmp_path):
    """``knobs=hf`` (the preset of the README's GPU example) reaches an HF adapter's knobs.

    The tiny checkpoint's pixel ladder stops at 64 tokens, so the test widens it with
    ``model.knob_values`` as a user of a small checkpoint would.
    """
    from knoblab.config import plain
    from knoblab.hydra_utils import compose
    from knoblab.profiling.runner import knob_lists

    ckpt = write_tiny_checkpoint("qwen2_5_vl", tmp_path / "ckpt")
    cfg = compose(
        "profile",
        [
            "model=hf_qwen2_5_vl",
            f"model.path={ckpt}",
            "model.dtype=fp32",
            "+model.knob_values.vision_tokens=[256,1024,4096]",
            "knobs=hf",
        ],
    )
    knobs = plain(cfg.knobs)
    assert knobs["vision_tokens"] == [256, 1024, 4096] and knobs["tier"] is None
    lists = knob_lists(knobs, build_adapter(plain(cfg.model)))
    assert lists == {"vision_tokens": [256, 1024, 4096]}
