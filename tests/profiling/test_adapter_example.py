"""The README's adapter example runs as written: a complete adapter in at most 40 lines."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from PIL import Image

from knoblab.data.sample import Sample
from knoblab.models.adapter import ModelAdapter
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset

DOC = Path(__file__).resolve().parents[2] / "README.md"
# The README's "Bring your own model" section puts this marker right before the block.
MARKER = "<!-- adapter-example -->"


def _example_code() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"README.md has exactly one {MARKER} marker"
    block = re.match(r"\s*```python\n(.*?)```", text.split(MARKER, 1)[1], re.S)
    assert block, f"a ```python block follows {MARKER} directly"
    return block.group(1)


def test_example_is_the_adapter() -> None:
    code = _example_code()
    assert "class MyAdapter" in code and "def decode" in code


def test_example_is_at_most_40_lines() -> None:
    assert len(_example_code().strip().splitlines()) <= 40


def test_example_adapter_runs_a_sweep(tmp_path: Path) -> None:
    namespace: dict = {}
    exec(compile(_example_code(), str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    torch.manual_seed(0)
    adapter = namespace["MyAdapter"]()
    assert isinstance(adapter, ModelAdapter)
    samples = [
        Sample(
            i,
            f"how many shapes {i}",
            [str(i % 10)],
            Image.new("RGB", (20 + 7 * i, 30), (40 * i % 255, 90, 10)),
        )
        for i in range(5)
    ]
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": None, "seed": 0}},
        "knobs": {"vision_tokens": [4, 16, 64], "num_active_blocks": [1, 2, 4]},
        "design": {"name": "stratified"},
        "run": {
            "output_dir": str(tmp_path),
            "warmup_runs": 1,
            "num_runs_per_sample": 2,
            "progress": False,
        },
    }
    res = run_sweep(cfg, adapter=adapter, dataset=ListDataset(samples, name="mine"))
    assert len(res.records) == 9
    assert "mine_imgsizetokens64_blocks4.json" in res.records
    r = res.records["mine_imgsizetokens64_blocks4.json"]
    assert r["status"] == "ok" and r["num_samples"] == 5 and r["num_failed_samples"] == 0
    assert r["actual_vision_tokens_mean"] == 64 and r["num_total_blocks"] == 4
    assert r["aggregate_stats"]["T_vision_total_count"] == 5
    assert all(s["pred"] is not None and len(s["runs"]) == 2 for s in r["per_sample_results"])
