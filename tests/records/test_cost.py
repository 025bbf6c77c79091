"""Cost aggregates from real batch rows; the record checks accept and refuse cost fields."""

from __future__ import annotations

import numpy as np
import pytest

from knoblab.data.shapes import ShapesVQA
from knoblab.errors import DataError
from knoblab.models.reference.adapter import ReferenceAdapter
from knoblab.models.reference.weights import load_reference
from knoblab.profiling.batch import measure_batch
from knoblab.records.cost import cost_aggregates
from knoblab.records.schema import COST_FIELDS, check_record


@pytest.fixture(scope="module")
def rows():
    adapter = ReferenceAdapter(load_reference(None))
    adapter.apply_knobs({"tier": "low"})
    ds = ShapesVQA(6, seed=3)
    out = []
    for start in (0, 3):  # two batches of 3
        prepared = [adapter.preprocess(ds[i]) for i in range(start, start + 3)]
        out += [dict(r, status="ok") for r in measure_batch(adapter, prepared, 4).rows()]
    return out


def test_itl_pools_every_step_of_every_sample(rows):
    stats, warns = cost_aggregates(rows)
    steps = [v for r in rows for v in r["itl_ms"]]
    assert stats["itl_ms_count"] == len(steps) == sum(r["output_tokens"] - 1 for r in rows)
    assert stats["itl_ms_p50"] == pytest.approx(float(np.percentile(steps, 50)))
    assert stats["T_ttft_count"] == 6
    assert stats["T_ttft_mean"] == pytest.approx(np.mean([r["T_ttft"] for r in rows]))
    assert stats["kv_cache_bytes_min"] > 0 and stats["weights_bytes_std"] == 0.0
    assert stats["energy_j_count"] == 0 and stats["energy_j_mean"] is None  # no meter given
    assert any(w.startswith("p95 rests on 6 samples") and "T_ttft" in w for w in warns)
    failed = cost_aggregates([*rows, {"status": "failed", "T_ttft": 1e9}])[0]
    assert failed["T_ttft_max"] == stats["T_ttft_max"]  # failed rows are left out


def test_user_percentiles_and_intervals_reach_the_cost_figures(rows):
    from knoblab.records.aggregate import IntervalSettings

    stats, warns = cost_aggregates(rows, percentiles=(90.0,), intervals=IntervalSettings())
    assert "T_ttft_p90" in stats and "T_ttft_p95" not in stats
    for figure in ("T_ttft", "itl_ms", "throughput_samples_s"):
        lo, hi = stats[f"{figure}_p90_lo"], stats[f"{figure}_p90_hi"]
        assert lo <= stats[f"{figure}_p90"] <= hi
        assert stats[f"{figure}_mean_lo"] <= stats[f"{figure}_mean"] <= stats[f"{figure}_mean_hi"]
    assert stats["energy_j_mean_lo"] is None  # no value: no interval either
    assert any(w.startswith("p90 rests on 6 samples") for w in warns)


def test_check_record_accepts_cost_rows_and_names_a_bad_field(rows):
    rec = {"knobs": {"tier": "low"}, "per_sample_results": [dict(r) for r in rows]}
    for r in rec["per_sample_results"]:
        r.pop("batched"), r.pop("energy_unavailable_reason")
    check_record(rec, "r.json")
    for field, bad in (("throughput_samples_s", "fast"), ("itl_ms", [1.0, "x"])):
        broken = {**rec, "per_sample_results": [dict(rows[0], **{field: bad})]}
        with pytest.raises(DataError, match=rf"per_sample_results\[0\]\.{field}"):
            check_record(broken, "r.json")
    assert set(COST_FIELDS) <= set(rows[0]) | {"peak_memory_bytes"}
