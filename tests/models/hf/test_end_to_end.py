"""From the real runner into the real analysis, for every mapped family and a user's own knob.

Issue 12: ``profile`` -> ``analyze`` must work whatever knobs a model has (dense models
have no ``top_k``; a user adapter may name its single knob ``resolution``). Each case
runs a tiny sweep (2 samples, 2 configurations) with the real runner and the real CLI
``analyze``, and checks the front is non-empty and the report is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from knoblab import cli
from knoblab.data.registry import build_dataset
from knoblab.models.adapter import KnobSpec
from knoblab.models.hf.tiny import BUILDERS, write_tiny_checkpoint
from knoblab.models.registry import build_adapter
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[3] / "README.md"


def _dataset(root: Path) -> dict[str, Any]:
    lines = []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, color in enumerate([(220, 30, 30), (30, 30, 220)]):
        Image.new("RGB", (96, 64), color).save(root / "images" / f"{i}.png")
        lines.append(
            json.dumps(
                {
                    "sample_id": i,
                    "image": f"images/{i}.png",
                    "question": "what color ?",
                    "answers": ["red"],
                }
            )
        )
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return {"format": "jsonl", "path": str(root / "manifest.jsonl"), "name": "tiny"}


def _cfg(out: Path, knobs: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "dataset": {"name": "tiny", "sampling": {"num_samples_per_epoch": 2, "seed": 1}},
        "knobs": knobs,
        "design": {"name": "full"},
        "run": {"output_dir": str(out), "warmup_runs": 1, "max_new_tokens": 3, "progress": False},
    }


def _analyze(sweep_dir: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    code = cli.main(["analyze", str(sweep_dir), "--out", str(out), "--budget-ms", "1e6"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Traceback" not in printed.out + printed.err
    assert "left out" not in printed.out, printed.out
    summary = json.loads((out / "analysis.json").read_text())
    (front,) = summary["fronts"].values()
    assert any(row["on_front"] for row in front)
    assert (out / "report.html").stat().st_size > 0 and (out / "analysis.md").exists()
    return summary


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_family_profile_then_analyze(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = write_tiny_checkpoint(family, tmp_path / "ckpt")
    ds = _dataset(tmp_path / "data")
    hardware = {"device": "cpu", "num_threads": 1, "tf32": False}
    adapter = build_adapter({"kind": "hf", "path": str(ckpt), "dtype": "fp32"}, hardware)
    specs = adapter.knobs()
    knobs: dict[str, list[Any]] = {"num_active_blocks": [1, 2]}
    if "vision_tokens" in specs:  # a dense model: no top_k, never an error
        knobs = {"vision_tokens": list(specs["vision_tokens"].values[:2]), "num_active_blocks": [2]}
    if "top_k" in specs:
        knobs["top_k"] = [1]
    res = run_sweep(_cfg(tmp_path / "out", knobs), adapter=adapter, dataset=build_dataset(ds))
    assert len(res.ran) == 2 and all(r["status"] == "ok" for r in res.records.values())
    assert all(set(r["knobs"]) == set(knobs) for r in res.records.values())
    summary = _analyze(res.out_dir, tmp_path / "analysis", capsys)
    assert summary["knobs"] == [
        k for k in ("vision_tokens", "top_k", "num_active_blocks") if k in knobs
    ]


def _readme_adapter() -> type:
    text = README.read_text(encoding="utf-8")
    code = re.match(r"\s*```python\n(.*?)```", text.split("<!-- adapter-example -->", 1)[1], re.S)
    assert code
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(README), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace["MyAdapter"]


def _samples(n: int) -> ListDataset:
    from knoblab.data.sample import Sample

    return ListDataset(
        [
            Sample(
                i,
                f"how many shapes {i}",
                [str(i % 10)],
                Image.new("RGB", (24, 30), (40 * i, 90, 10)),
            )
            for i in range(n)
        ],
        name="mine",
    )


def test_readme_adapter_profile_then_analyze(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's MyAdapter has vision_tokens and num_active_blocks, no top_k."""
    import torch

    torch.manual_seed(0)
    adapter = _readme_adapter()()
    cfg = _cfg(tmp_path / "out", {"vision_tokens": [4, 16], "num_active_blocks": [2]})
    res = run_sweep(cfg, adapter=adapter, dataset=_samples(3))
    summary = _analyze(res.out_dir, tmp_path / "analysis", capsys)
    assert summary["knobs"] == ["vision_tokens", "num_active_blocks"]


def test_user_knob_of_its_own_name_profile_then_analyze(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user adapter whose single knob is ``resolution`` (none of seed 002's names)."""
    import torch

    torch.manual_seed(0)
    inner = _readme_adapter()()

    class ResolutionAdapter:
        name, device, dtype = "my-res-vlm", "cpu", "float32"
        tokens = {"low": 4, "high": 16}

        def knobs(self) -> dict[str, KnobSpec]:
            return {"resolution": KnobSpec("resolution", ("low", "high"), "low")}

        def apply_knobs(self, settings: dict[str, Any]) -> dict[str, Any]:
            inner.apply_knobs({"vision_tokens": self.tokens[settings.get("resolution", "low")]})
            return {}

        def __getattr__(self, attr: str) -> Any:  # the protocol's stages: the README model's
            return getattr(inner, attr)

    cfg = _cfg(tmp_path / "out", {"resolution": ["low", "high"]})
    res = run_sweep(cfg, adapter=ResolutionAdapter(), dataset=_samples(3))
    assert sorted(res.records) == ["mine_resolutionhigh.json", "mine_resolutionlow.json"]
    rec = res.records["mine_resolutionhigh.json"]
    assert rec["knobs"] == {"resolution": "high"} and rec["top_k"] is None
    summary = _analyze(res.out_dir, tmp_path / "analysis", capsys)
    assert summary["knobs"] == ["resolution"]
