"""Synthetic results directories shared by the analysis tests (written once per session)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from knoblab.analysis.synthetic import write_synthetic_results


@pytest.fixture(scope="session")
def exact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tier sweep, 3 tiers x top_k 2/4/8 x blocks 4/8, latencies exactly the LatencyLaw."""
    return write_synthetic_results(tmp_path_factory.mktemp("exact"), num_samples=30, noise=0.0)


@pytest.fixture(scope="session")
def noisy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same sweep with 3% log-normal timing noise."""
    return write_synthetic_results(
        tmp_path_factory.mktemp("noisy"), num_samples=30, noise=0.03, seed=1
    )


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small noisy sweep (2 tiers x 2 top_k x 2 blocks, 12 samples) for report rendering."""
    return write_synthetic_results(
        tmp_path_factory.mktemp("small"),
        tiers=("low", "high"),
        top_ks=(2, 4),
        blocks=(4, 8),
        num_samples=12,
        noise=0.03,
        seed=2,
    )


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records of the REAL runner: the shipped reference model on shapes-vqa, run once.

    2 tiers x top_k 1/2 x blocks 1/2 (8 configurations) of 4 samples, warmup 0: small
    enough for a 2-core CI machine, with every knob varying so E1/E2/E3 have work.
    """
    import torch

    from knoblab.hydra_utils import compose
    from knoblab.profiling.runner import run_sweeps

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("real")
    cfg = compose(
        "profile",
        [
            "dataset.size=40",
            "dataset.sampling.num_samples_per_epoch=4",
            "knobs.tier=[low,high]",
            "knobs.top_k=[1,2]",
            "knobs.num_active_blocks=[1,2]",
            "design=full",
            "run.warmup_runs=0",
            "run.max_new_tokens=3",
            "run.progress=false",
            f"run.output_dir={out}",
        ],
    )
    try:
        (res,) = run_sweeps(cfg)
    finally:
        torch.set_num_threads(threads)  # the cpu hardware preset sets it process-wide
    return res.out_dir


#: (width, height), RGB colour of each image of a tiny JSONL dataset.
Images = Sequence[tuple[tuple[int, int], tuple[int, int, int]]]


@pytest.fixture(scope="session")
def tiny_hf_sweep() -> Callable[[Path, str, Images, Mapping[str, Any]], Path]:
    """A factory: ``make(tmp, family, images, knobs)`` writes a tiny ``family`` checkpoint
    and a JSONL dataset of ``images`` (one "color ?" question each), sweeps ``knobs`` over it
    with the REAL runner (CPU, fp32, one thread, no warmup) and returns the sweep folder."""

    def make(tmp: Path, family: str, images: Images, knobs: Mapping[str, Any]) -> Path:
        from PIL import Image

        from knoblab.data.registry import build_dataset
        from knoblab.models.hf.tiny import write_tiny_checkpoint
        from knoblab.models.registry import build_adapter
        from knoblab.profiling.runner import run_sweep

        ckpt = write_tiny_checkpoint(family, tmp / "ckpt")
        (tmp / "data" / "images").mkdir(parents=True)
        lines = []
        for i, (size, color) in enumerate(images):
            Image.new("RGB", size, color).save(tmp / "data" / "images" / f"{i}.png")
            q = {"sample_id": i, "image": f"images/{i}.png", "question": "color ?"}
            lines.append(json.dumps({**q, "answers": ["red"]}))
        (tmp / "data" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
        data = {"format": "jsonl", "path": str(tmp / "data" / "manifest.jsonl"), "name": "tiny"}
        hardware = {"device": "cpu", "num_threads": 1, "tf32": False}
        adapter = build_adapter({"kind": "hf", "path": str(ckpt), "dtype": "fp32"}, hardware)
        cfg = {
            "dataset": {**data, "sampling": {"num_samples_per_epoch": None, "seed": 1}},
            "knobs": dict(knobs),
            "design": {"name": "full"},
            "run": {"output_dir": str(tmp / "out"), "warmup_runs": 0, "progress": False},
        }
        return Path(run_sweep(cfg, adapter=adapter, dataset=build_dataset(data)).out_dir)

    return make
