"""Intervals from the real runner into the real analysis (issue 13 item 3, issue 15 item 3).

Three models, each through ``knoblab.profiling.runner`` and ``knoblab.analysis.analyze``:
the reference VLM (``real_dir``), a tiny Hugging Face MoE (Qwen3-VL-MoE) and a user's own
adapter with its own knob name (``recipe``). Every record carries its intervals and they
contain their figures; the analysis reads them (not recomputes) into analysis.json; the
Wilson interval of the accuracy matches a table from the formula; the Pareto front marks
a near-tie; the budget answer says how sure it is; ``run.percentiles`` with 90 gives p90
everywhere.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knoblab import records
from knoblab.analysis.analyze import analyze
from knoblab.analysis.pareto import tied_mask
from knoblab.data.sample import Sample
from knoblab.errors import ConfigError
from knoblab.models.adapter import Generation, KnobSpec, Prepared, check_knob
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset
from knoblab.records.intervals import bootstrap_ci, wilson_interval

pytestmark = pytest.mark.filterwarnings("ignore:reference weights not found")

N = 20  #: samples per configuration of the user adapter's sweep
#: recipe -> (base ms per sample, which sample ids are answered right). A sample takes
#: base + 0.5 ms x (id % 5): a spread within each configuration that is larger than the
#: drift between configurations measured one after the other on a loaded machine.
RECIPES: dict[str, tuple[float, Any]] = {
    "twin_a": (1.0, lambda i: i < N // 2),  # 10 of 20, the same work as twin_b
    "twin_b": (1.0, lambda i: i >= N // 2),  # 10 of 20: the near-tie
    "best": (2.0, lambda i: True),  # 20 of 20, 1 ms slower
    "bad": (20.0, lambda i: False),  # 0 of 20 and ~10x slower: off the front beyond noise
}


class RecipeAdapter:
    """A user's model with one knob of its own name, ``recipe``: each value sleeps a known
    time per sample (split over the three stages) and answers a known set of samples."""

    name = "recipe-model"
    device = "cpu"
    dtype = "float32"

    def __init__(self) -> None:
        self.recipe = "twin_a"
        self.ms = 0.0

    def knobs(self) -> dict[str, KnobSpec]:
        return {"recipe": KnobSpec("recipe", tuple(RECIPES), "twin_a", "what to run")}

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        for k, v in settings.items():
            check_knob(self.knobs(), k, v, self.name)
        self.recipe = settings.get("recipe", self.recipe)
        return {}

    def _wait(self, share: float) -> None:
        time.sleep(self.ms * share / 1000.0)

    def preprocess(self, sample: Sample) -> Prepared:
        self.ms = RECIPES[self.recipe][0] + 0.5 * (sample.sample_id % 5)
        return Prepared(sample, 4, 8, 8)

    def encode_vision(self, p: Prepared) -> Any:
        self._wait(0.4)
        return p

    def prefill(self, p: Prepared, vision: Any) -> Any:
        self._wait(0.3)
        return p

    def decode(self, state: Prepared, max_new_tokens: int) -> Generation:
        self._wait(0.3)
        i = state.inputs.sample_id
        right = RECIPES[self.recipe][1](i)
        return Generation([1, 2], str(i % 7) if right else "wrong")


def _recipe_sweep(root: Path, **run: Any) -> Path:
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": None, "seed": 0}},
        "knobs": {"recipe": list(RECIPES)},
        "design": {"name": "full"},
        "run": {
            "output_dir": str(root),
            "warmup_runs": 1,
            "num_runs_per_sample": 1,
            "progress": False,
            **run,
        },
    }
    res = run_sweep(cfg, adapter=RecipeAdapter(), dataset=ListDataset.synthetic(N, name="mine"))
    return Path(res.out_dir)


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _recipe_sweep(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory: pytest.TempPathFactory, tiny_hf_sweep: Any) -> Path:
    """A tiny Qwen3-VL-MoE checkpoint over a JSONL dataset: top_k 1 and 2, 4 samples."""
    colors = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (200, 200, 30)]
    knobs = {"vision_tokens": [16], "top_k": [1, 2]}
    return tiny_hf_sweep(
        tmp_path_factory.mktemp("moe"), "qwen3_vl_moe", [((96, 64), c) for c in colors], knobs
    )


def _dirs(request: pytest.FixtureRequest, which: str) -> Path:
    return request.getfixturevalue(which)


def _ok_values(rec: Mapping[str, Any], field: str) -> list[float]:
    return [
        float(r[field])
        for r in rec["per_sample_results"]
        if r.get("status") == "ok" and isinstance(r.get(field), (int, float))
    ]


@pytest.mark.parametrize("which", ["real_dir", "moe_dir", "recipe_dir"])
def test_every_record_has_intervals_that_contain_their_figures(
    which: str, request: pytest.FixtureRequest
) -> None:
    d = _dirs(request, which)
    recs = records.load_records(d)
    assert recs
    for name, rec in recs.items():
        block = rec["intervals"]
        assert block["method"].startswith("percentile bootstrap") and block["seed"] == 0
        assert block["confidence"] == 0.95 and block["resamples"] == 1000
        assert rec["percentiles"] == [50.0, 95.0, 99.0]
        agg = rec["aggregate_stats"]
        for f in records.INTERVAL_FIELDS:
            x = _ok_values(rec, f)
            for stat in ("mean", "p50", "p95", "p99"):
                est, lo, hi = agg[f"{f}_{stat}"], agg[f"{f}_{stat}_lo"], agg[f"{f}_{stat}_hi"]
                if not x:
                    assert est is None and lo is None and hi is None
                    continue
                assert lo <= est <= hi, (name, f, stat)
                # the record's interval is bootstrap_ci's with the record's settings
                # (moved to the estimate when the percentile bootstrap misses it)
                b_lo, b_hi = bootstrap_ci(x, stat, seed=block["seed"])
                assert (lo, hi) == pytest.approx((min(b_lo, est), max(b_hi, est)), rel=1e-12)
        acc = _ok_values(rec, "accuracy")
        assert rec["accuracy_lo"] <= rec["accuracy"] <= rec["accuracy_hi"]
        if set(acc) <= {0.0, 1.0}:
            assert block["accuracy"] == "wilson"
            want = wilson_interval(sum(acc), len(acc))
            assert (rec["accuracy_lo"], rec["accuracy_hi"]) == pytest.approx(want)
        else:
            assert block["accuracy"] == "bootstrap"


@pytest.mark.parametrize("which", ["real_dir", "moe_dir", "recipe_dir"])
def test_analysis_reads_the_records_intervals(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    d = _dirs(request, which)
    a = analyze(d, tmp_path / "a", budget_ms=1e6)
    data = json.loads((tmp_path / "a" / "analysis.json").read_text())
    recs = {Path(n).stem: r for n, r in records.load_records(d).items()}
    (points,) = data["fronts"].values()
    for pt in points:
        rec = recs[pt["config"]]
        agg = rec["aggregate_stats"]
        assert pt["latency_lo"] == pytest.approx(agg["T_total_p95_lo"])
        assert pt["latency_hi"] == pytest.approx(agg["T_total_p95_hi"])
        assert pt["accuracy_lo"] == pytest.approx(rec["accuracy_lo"])
        assert pt["T_total_mean_hi"] == pytest.approx(agg["T_total_mean_hi"])
        assert isinstance(pt["tied_with_front"], bool) and not (
            pt["on_front"] and pt["tied_with_front"]
        )
    # tied_with_front is tied_mask of the records' intervals
    (front,) = a.fronts.values()
    acc = tuple(front[c].to_numpy(float) for c in ("accuracy", "accuracy_lo", "accuracy_hi"))
    lat = tuple(front[c].to_numpy(float) for c in ("latency", "latency_lo", "latency_hi"))
    assert front["tied_with_front"].tolist() == tied_mask(acc, lat).tolist()
    assert data["intervals"]["percentiles"] == ["p50", "p95", "p99"]
    assert data["intervals"]["records"][0]["resamples"] == 1000
    b = data["budget"]
    assert 0.0 <= b["confidence_best"] <= b["confidence"] <= 1.0
    assert b["accuracy_lo"] <= b["accuracy"] <= b["accuracy_hi"]
    md = (tmp_path / "a" / "analysis.md").read_text()
    assert "**intervals**: percentile bootstrap" in md and " [" in md


#: Wilson (1927) score interval at 95 %, z = 1.959963984540054, from its closed forms:
#: k = 0: (0, z²/(n + z²)); k = n: (n/(n + z²), 1); k = n/2: 1/2 -+ z / (2 sqrt(n + z²)).
#: (Agresti & Coull 1998 recommend it over the Wald interval, which is (0, 0) at k = 0.)
WILSON_TABLE = {
    "bad": (0, 20, 0.0, 0.16112515805281938),
    "best": (20, 20, 0.8388748419471806, 1.0),
    "twin_a": (10, 20, 0.29929800819821234, 0.7007019918017876),
    "twin_b": (10, 20, 0.29929800819821234, 0.7007019918017876),
}


def test_wilson_known_values_in_the_records(recipe_dir: Path) -> None:
    for rec in records.load_records(recipe_dir).values():
        k, n, lo, hi = WILSON_TABLE[rec["knobs"]["recipe"]]
        assert rec["intervals"]["accuracy"] == "wilson"
        assert rec["accuracy"] == pytest.approx(k / n)
        assert rec["accuracy_lo"] == pytest.approx(lo, abs=1e-9)
        assert rec["accuracy_hi"] == pytest.approx(hi, abs=1e-9)
    assert wilson_interval(5, 10) == pytest.approx((0.236593090512564, 0.7634069094874361))


def test_intervals_are_reproducible_with_the_seed(recipe_dir: Path) -> None:
    """The same rows give the same intervals; another seed gives others (same method)."""
    rec = next(iter(records.load_records(recipe_dir).values()))
    rows = rec["per_sample_results"]

    def build(seed: int) -> dict[str, Any]:
        return records.build_record(
            task="t",
            model="m",
            knobs=rec["knobs"],
            effective={},
            rows=rows,
            status="ok",
            error=None,
            environment={},
            sampling={},
            intervals=records.IntervalSettings(seed=seed),
        )

    a, b, c = build(0), build(0), build(1)
    keys = [k for k in a["aggregate_stats"] if k.endswith(("_lo", "_hi"))]
    assert keys and all(a["aggregate_stats"][k] == b["aggregate_stats"][k] for k in keys)
    assert all(a["aggregate_stats"][k] == rec["aggregate_stats"][k] for k in keys)
    assert any(a["aggregate_stats"][k] != c["aggregate_stats"][k] for k in keys)
    assert c["intervals"]["seed"] == 1


def test_near_tie_is_marked_and_the_clearly_worse_is_not(recipe_dir: Path) -> None:
    """twin_a and twin_b: same work, same accuracy (10 of 20): whichever measured faster is
    on the front and the other is tied with it (their intervals overlap on both); ``bad``
    (0 of 20, ~10x slower) is beaten beyond noise; ``best`` (20 of 20) is on the front."""
    a = analyze(recipe_dir, write=False, percentile="p50")
    (front,) = a.fronts.values()
    by = {r["recipe"]: r for _, r in front.iterrows()}
    ta, tb = by["twin_a"], by["twin_b"]
    assert ta["latency_lo"] <= tb["latency_hi"] and tb["latency_lo"] <= ta["latency_hi"], (
        "the twins' p50 intervals overlap (same work)"
    )
    assert {(ta["on_front"], ta["tied_with_front"]), (tb["on_front"], tb["tied_with_front"])} == {
        (True, False),
        (False, True),
    }
    assert not by["bad"]["on_front"] and not by["bad"]["tied_with_front"]
    assert by["best"]["on_front"] and not by["best"]["tied_with_front"]


def test_budget_confidence_of_a_clear_winner(recipe_dir: Path) -> None:
    """T_total p50 under 12 ms (best ~3 ms, bad >= 20 ms): the pick is ``best`` (20 of 20
    against 10 of 20); it meets the budget and stays the pick in (nearly) every resample."""
    a = analyze(recipe_dir, write=False, budget_ms=12.0, percentile="p50")
    b = a.budget
    assert b is not None and b.knobs == {"recipe": "best"} and b.source == "measured"
    assert 0.95 <= b.confidence <= 1.0 and 0.95 <= b.confidence_best <= b.confidence
    assert b.resamples == 1000 and b.num_samples == N
    assert "bootstrap resamples" in b.message()


def test_budget_confidence_of_a_coin_flip(recipe_dir: Path) -> None:
    """Between the twins alone (best held out by a budget below its latency is not robust on
    a loaded machine, so: the twins' own resamples): each wins about half of them."""
    from knoblab.analysis.budget import budget_confidence
    from knoblab.analysis.load import load_results

    res = load_results(recipe_dir)
    twins = res.configs[res.configs["recipe"].isin(["twin_a", "twin_b"])]
    chosen = twins.iloc[0]
    meets, still = budget_confidence(res, twins, chosen, 1e6, "p95")
    assert meets == 1.0 and 0.2 < still < 0.8


def test_p90_end_to_end(tmp_path: Path) -> None:
    d = _recipe_sweep(tmp_path, percentiles=[50, 90, 99])
    for rec in records.load_records(d).values():
        assert rec["percentiles"] == [50.0, 90.0, 99.0]
        agg = rec["aggregate_stats"]
        x = _ok_values(rec, "T_total")
        assert agg["T_total_p90"] == pytest.approx(np.percentile(x, 90))
        assert agg["T_total_p90_lo"] <= agg["T_total_p90"] <= agg["T_total_p90_hi"]
        assert "T_total_p95" not in agg
    a = analyze(d, tmp_path / "a", percentile="p90", budget_ms=12.0)
    assert a.budget is not None and a.budget.percentile == "p90"
    assert a.estimator is not None and "p90" in a.estimator.tail_factor
    data = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert data["percentile"] == "p90" and data["intervals"]["percentiles"] == ["p50", "p90", "p99"]
    assert "T_total p90" in (d / "report.md").read_text()
    with pytest.raises(ConfigError, match=r"percentile='p95'.*hold: p50, p90, p99"):
        analyze(d, write=False, percentile="p95")


def test_records_without_intervals_get_them_on_read(tmp_path: Path) -> None:
    """A v2 record (the real runner's of 2026-12-01) is migrated: intervals computed the way
    the writer does, with the record's own point figures kept."""
    fixture = Path(__file__).parents[1] / "records" / "fixtures"
    old = json.loads(
        (fixture / "v2_knoblab_synthetic_imgsizetier-low_crops2_topk2_blocks2.json").read_text()
    )
    assert "intervals" not in old and "T_total_p95_lo" not in old["aggregate_stats"]
    new = records.migrate_record(old)
    assert new["intervals"]["migrated_from"] == 2 and new["percentiles"] == [50.0, 95.0, 99.0]
    for stat in ("mean", "p50", "p95", "p99"):
        est = old["aggregate_stats"][f"T_total_{stat}"]
        assert new["aggregate_stats"][f"T_total_{stat}"] == est
        assert new["aggregate_stats"][f"T_total_{stat}_lo"] <= est
        assert est <= new["aggregate_stats"][f"T_total_{stat}_hi"]
    k = sum(r["accuracy"] for r in old["per_sample_results"])
    want = wilson_interval(k, len(old["per_sample_results"]))
    assert (new["accuracy_lo"], new["accuracy_hi"]) == pytest.approx(want)
    assert not math.isnan(new["accuracy_hi"])
