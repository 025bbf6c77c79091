"""Issue 14, item 3: answers of varying length, each scored by its own metric, and the
recipe's decode claims computed from a real ``knoblab profile`` sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from knoblab import cli
from knoblab.data.sample import Sample, sample_metric
from knoblab.data.scoring import score
from knoblab.profiling import records as rec
from knoblab.profiling.measure import measure_batch_positions
from knoblab.profiling.synthetic import ListDataset, WaitAdapter
from knoblab.training.recipe import MIN_OUTPUT_TOKEN_COUNTS, decode_claims


def test_a_sample_names_its_own_metric() -> None:
    """``metadata["metric"]`` wins over the dataset's; without it the dataset's applies."""
    ds = ListDataset(
        [
            Sample(1, "q", ["unknowns"], image=(32, 32), metadata={"metric": "anls"}),
            Sample(2, "q", ["unknowns"], image=(32, 32)),  # dataset's exact_match
            Sample(5, "q", ["Unknown"], image=(32, 32), metadata={"metric": "anls"}),
            Sample(6, "q", ["unknown"], image=(32, 32), metadata={"metric": "bogus"}),
        ]
    )
    ad = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0)  # answers "unknown" here
    ad.apply_knobs({"tier": "low", "top_k": 1, "num_active_blocks": 2})
    rows = [  # one sample per unit of work, as the runner measures at batch size 1
        measure_batch_positions(
            ad, ds, [(i, 0, i)], {"tier": "low"}, {}, runs=1,
            max_new_tokens=3, advance=lambda: None,
        )[0]
        for i in range(4)
    ]  # fmt: skip
    assert [r["pred"] for r in rows[:3]] == ["unknown"] * 3
    # ANLS: 1 - 1/8 ("unknown" vs "unknowns"); exact match: 0; ANLS folds case: 1.
    assert [r["accuracy"] for r in rows[:3]] == [pytest.approx(0.875), 0.0, 1.0]
    # An unknown metric fails its own sample only, naming the metric.
    assert rows[3]["status"] == "failed" and "bogus" in rows[3]["error"]
    assert sample_metric(ds[1], "vqa") == "vqa"
    assert sample_metric(Sample(0, "q", [], metadata={"metric": ""}), "vqa") == "vqa"


SMALL = [
    "dataset.sampling.num_samples_per_epoch=24",
    "knobs.tier=[high]",
    "knobs.top_k=[1,4]",
    "knobs.num_active_blocks=[4]",
    "design=full",
    "run.warmup_runs=1",
    "run.progress=false",
]


@pytest.mark.usefixtures("keep_torch_threads")
def test_shipped_weights_answer_with_varying_lengths_on_a_small_sweep(
    tmp_path: Path, capsys
) -> None:
    """The output-token-count claim on a small real sweep of the shipped weights: codes
    of 1-10 digits make at least four distinct counts, and every code answer is
    scored with ANLS (a partly read code scores in between)."""
    assert cli.main(["profile", *SMALL, f"run.output_dir={tmp_path}"]) == 0
    capsys.readouterr()
    results = tmp_path / "shapes-vqa"
    rows = [r for rec_ in rec.load_records(results).values() for r in rec_["per_sample_results"]]
    assert len(rows) == 48 and all(r["status"] == "ok" for r in rows)
    codes = [r for r in rows if r["metadata"]["question_type"] == "code"]
    assert codes and all(r["metadata"]["metric"] == "anls" for r in codes)
    for r in rows:
        metric = r["metadata"].get("metric", "vqa")
        assert r["accuracy"] == pytest.approx(score(metric, r["pred"], r["metadata"]["answers"]))
    # Most codes are read right at the high tier (the recipe's claim is on 300 samples).
    assert sum(r["accuracy"] for r in codes) / len(codes) > 0.5
    counts, _ = decode_claims(results)
    assert counts[2] and counts[1] >= MIN_OUTPUT_TOKEN_COUNTS
    assert counts[1] == len({r["output_tokens"] for r in rows})
