"""Batch size as a knob and the cost figures, from the real runner into the real analysis
(issue 15 items 1-2).

Three models through ``knoblab.profiling.runner`` and ``knoblab.analysis.analyze``, each
swept over ``knobs.batch_size``: the reference VLM (batched stages), a tiny dense Hugging
Face model (Qwen2.5-VL, batched stages) and a user's adapter with its own knob name and no
batched stages (its samples run one after another: ``batched: False``). Per sample, the
answer and score at batch 4 (or 2) equal those at batch 1; TTFT/TPOT/ITL, throughput,
memory and energy (or its reason) are in the rows, the records' aggregates,
samples.parquet and environment.json; the analysis lists peak memory per configuration
and the budget answer takes a memory cap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from knoblab import records
from knoblab.analysis.analyze import analyze
from knoblab.data.sample import Sample
from knoblab.errors import ConfigError
from knoblab.models.adapter import Generation, KnobSpec, Prepared, check_knob
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset

pytestmark = pytest.mark.filterwarnings("ignore:reference weights not found")

COST_ROW_FIELDS = ("T_ttft", "throughput_samples_s", "throughput_tokens_s", "peak_memory_bytes")


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped reference model: batch_size 1 and 4 over 8 samples (two batches of 4)."""
    from knoblab.hydra_utils import compose
    from knoblab.profiling.runner import run_sweeps

    out = tmp_path_factory.mktemp("ref")
    cfg = compose(
        "profile",
        [
            "dataset.size=40",
            "dataset.sampling.num_samples_per_epoch=8",
            "knobs.tier=[low]",
            "knobs.top_k=[2]",
            "knobs.num_active_blocks=[4]",
            "knobs.batch_size=[1,4]",
            "design=full",
            f"run.output_dir={out}",
            "run.warmup_runs=0",
            "run.progress=false",
        ],
    )
    (res,) = run_sweeps(cfg)
    return Path(res.out_dir)


class LoopAdapter:
    """A user's model with its own knob ``speed`` and no batched stages."""

    name = "loop-model"
    device = "cpu"
    dtype = "float32"

    def __init__(self) -> None:
        self.speed = "fast"

    def knobs(self) -> dict[str, KnobSpec]:
        return {"speed": KnobSpec("speed", ("fast", "slow"), "fast", "how long a stage takes")}

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        for k, v in settings.items():  # batch_size never reaches the model
            check_knob(self.knobs(), k, v, self.name)
        self.speed = settings.get("speed", self.speed)
        return {}

    def preprocess(self, sample: Sample) -> Prepared:
        return Prepared(sample, 4, 8, 8)

    def _wait(self) -> None:
        time.sleep(0.001 if self.speed == "fast" else 0.003)

    def encode_vision(self, p: Prepared) -> Any:
        self._wait()
        return p

    def prefill(self, p: Prepared, vision: Any) -> Any:
        self._wait()
        return p

    def decode(self, state: Prepared, max_new_tokens: int) -> Generation:
        self._wait()
        i = state.inputs.sample_id
        return Generation([1, 2, 3], str(i % 7) if i % 2 else "wrong")


@pytest.fixture(scope="module")
def loop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": None, "seed": 0}},
        "knobs": {"speed": ["fast", "slow"], "batch_size": [1, 2]},
        "design": {"name": "full"},
        "run": {"output_dir": str(tmp_path_factory.mktemp("loop")), "warmup_runs": 1},
    }
    cfg["run"]["progress"] = False
    res = run_sweep(cfg, adapter=LoopAdapter(), dataset=ListDataset.synthetic(6, name="mine"))
    return Path(res.out_dir)


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory: pytest.TempPathFactory, tiny_hf_sweep: Any) -> Path:
    """A tiny dense Qwen2.5-VL checkpoint: batch_size 1 and 2 over 4 images."""
    sizes = [(96, 64), (64, 96), (64, 64), (128, 64)]  # different lengths: padding matters
    images = [(size, (40 * i, 200 - 40 * i, 90)) for i, size in enumerate(sizes)]
    knobs = {"vision_tokens": [16], "batch_size": [1, 2]}
    return tiny_hf_sweep(tmp_path_factory.mktemp("dense"), "qwen2_5_vl", images, knobs)


def _by_batch(d: Path) -> dict[tuple[Any, int], dict[str, Any]]:
    """{(the other knobs, batch size): record}."""
    out = {}
    for fname, rec in records.load_records(d).items():
        knobs = dict(rec["knobs"])
        bs = int(knobs.pop("batch_size"))
        out[(tuple(sorted(knobs.items())), bs)] = {**rec, "file": fname}
    return out


@pytest.mark.slow  # real runner sweeps (make test runs them)
@pytest.mark.parametrize(
    ("which", "big", "batched"),
    [("ref_dir", 4, True), ("dense_dir", 2, True), ("loop_dir", 2, False)],
)
def test_batch_answers_equal_batch_one_and_cost_fields_present(
    which: str, big: int, batched: bool, request: pytest.FixtureRequest
) -> None:
    d = request.getfixturevalue(which)
    recs = _by_batch(d)
    assert {bs for _, bs in recs} == {1, big}
    for (other, bs), rec in recs.items():
        assert rec["status"] == "ok", rec.get("error")
        assert f"_batch-size{bs}" in rec["file"]  # one record per batch size
        assert "batch_size" not in rec["effective_knobs"]
        one = {r["sample_id"]: r for r in recs[(other, 1)]["per_sample_results"]}
        rows = rec["per_sample_results"]
        assert len(rows) == len(one) and all(r["status"] == "ok" for r in rows)
        for r in rows:
            # padding and batching never change an answer or its score
            assert (r["pred"], r["accuracy"]) == (
                one[r["sample_id"]]["pred"],
                one[r["sample_id"]]["accuracy"],
            )
            assert r["batch_size"] == bs and r["batched"] is (batched and True)
            for f in COST_ROW_FIELDS:
                assert r[f] is not None and r[f] > 0, (which, f)
            assert r["T_ttft"] == pytest.approx(r["T_vision_total"] + r["T_LLM_prefill"])
            if r["output_tokens"] > 1:
                assert r["T_tpot"] == pytest.approx(r["T_LLM_decode"] / (r["output_tokens"] - 1))
            if batched:
                assert len(r["itl_ms"]) == r["output_tokens"] - 1
                assert sum(r["itl_ms"]) == pytest.approx(r["T_LLM_decode"])
            else:
                assert r["itl_ms"] is None
            assert r["energy_j"] is not None or r["energy_unavailable_reason"]
        # the configuration's peak is one figure: the max over its batches
        assert len({r["peak_memory_bytes"] for r in rows}) == 1
        agg = rec["aggregate_stats"]
        assert agg["throughput_samples_s_mean"] > 0 and agg["T_ttft_count"] == len(rows)
        assert agg["peak_memory_bytes_max"] == rows[0]["peak_memory_bytes"]
        assert agg["T_ttft_mean_lo"] <= agg["T_ttft_mean"] <= agg["T_ttft_mean_hi"]
        if which != "loop_dir":
            assert agg["kv_cache_bytes_mean"] > 0 and agg["weights_bytes_mean"] > 0
        if batched and any(r["output_tokens"] > 1 for r in rows):
            assert agg["itl_ms_count"] == sum(r["output_tokens"] - 1 for r in rows)
    env = json.loads((d / "environment.json").read_text())
    assert set(env["energy"]) >= {"source", "unavailable_reason"}
    df = pd.read_parquet(d / "samples.parquet")
    for col in ("knob_batch_size", "batch_size", "T_ttft", "T_tpot", "itl_ms", "peak_memory_bytes",
                "throughput_samples_s", "energy_j", "energy_unavailable_reason"):  # fmt: skip
        assert col in df.columns, col
    assert sorted(df["knob_batch_size"].unique()) == [1, big]


@pytest.mark.slow  # real runner sweeps (make test runs them)
def test_reference_batch_of_four_runs_as_one_padded_batch(ref_dir: Path) -> None:
    recs = _by_batch(ref_dir)
    ((_, four),) = [(k, r) for k, r in recs.items() if k[1] == 4]
    rows = four["per_sample_results"]
    # 8 samples, two batches of 4: the TTFT (the batch's vision + prefill) is shared in a batch
    assert len({round(r["T_ttft"], 9) for r in rows}) == 2
    assert len({round(r["throughput_samples_s"], 9) for r in rows}) == 2


@pytest.mark.slow  # real runner sweeps (make test runs them)
def test_analysis_lists_memory_and_caps_the_budget(ref_dir: Path, tmp_path: Path) -> None:
    a = analyze(ref_dir, tmp_path / "a", budget_ms=1e6)
    data = json.loads((tmp_path / "a" / "analysis.json").read_text())
    (mem,) = data["memory"].values()
    recs = {Path(n).stem: r for n, r in records.load_records(ref_dir).items()}
    assert len(mem) == len(recs) == 2
    for row in mem:
        rec = recs[row["label"]] if row["label"] in recs else None
        peak = rec["aggregate_stats"]["peak_memory_bytes_max"] if rec else None
        if peak is not None:
            assert row["peak_memory_mib"] == pytest.approx(peak / 2**20)
        assert row["peak_memory_mib"] > 0 and row["n"] == 8 and row["throughput_samples_s"] > 0
    md = (tmp_path / "a" / "analysis.md").read_text()
    assert "## Memory and throughput per configuration" in md and "peak MiB" in md
    assert a.budget is not None and a.budget.label is not None
    low = min(r["peak_memory_mib"] for r in mem)
    high = max(r["peak_memory_mib"] for r in mem)
    # a cap above every peak: the same answer, with its memory
    capped = analyze(ref_dir, tmp_path / "b", budget_ms=1e6, max_memory_mb=high + 1).budget
    assert capped is not None and capped.label == a.budget.label
    assert capped.memory_mb is not None and capped.memory_mb <= high + 1
    assert "peak memory" in capped.message()
    j = json.loads((tmp_path / "b" / "analysis.json").read_text())["budget"]
    assert j["max_memory_mb"] == high + 1 and j["memory_mb"] == pytest.approx(capped.memory_mb)
    # a cap below every peak: no answer, and the message names the smallest peak
    none = analyze(ref_dir, tmp_path / "c", budget_ms=1e6, max_memory_mb=low / 2).budget
    assert none is not None and none.label is None
    assert "smallest measured peak memory" in none.message()


@pytest.mark.slow  # real runner sweeps (make test runs them)
@pytest.mark.parametrize("bad", [0, -5.0, float("inf"), True, "lots"])
def test_bad_memory_cap_is_one_line(ref_dir: Path, tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_memory_mb"):
        analyze(ref_dir, tmp_path / "a", budget_ms=100.0, max_memory_mb=bad, write=False)


@pytest.mark.slow  # real runner sweeps (make test runs them)
def test_cli_memory_cap_flag(ref_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from knoblab.cli import main

    rc = main(["analyze", str(ref_dir), "--out", str(tmp_path / "a"), "--budget-ms", "1e6",
               "--max-memory-mb", "1e9"])  # fmt: skip
    assert rc == 0
    assert "peak memory" in capsys.readouterr().out
    for argv, key in (
        (["--budget-ms", "10", "--max-memory-mb", "many"], "--max-memory-mb"),
        (["--max-memory-mb", "100"], "max_memory_mb"),
        (["--budget-ms", "10", "--max-memory-mb", "-1"], "max_memory_mb"),
    ):
        rc = main(["analyze", str(ref_dir), "--out", str(tmp_path / "x"), *argv])
        err = capsys.readouterr().err
        assert rc != 0 and key in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_bad_batch_size_is_one_line(tmp_path: Path) -> None:
    for bad in (0, -1, 1.5, "four", True):
        cfg = {
            "dataset": {"name": "mine"},
            "knobs": {"speed": ["fast"], "batch_size": [1, bad]},
            "run": {"output_dir": str(tmp_path), "progress": False},
        }
        with pytest.raises(ConfigError, match="knobs.batch_size"):
            run_sweep(cfg, adapter=LoopAdapter(), dataset=ListDataset.synthetic(2, name="mine"))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow  # real runner sweeps (make test runs them)
def test_runs_per_sample_gives_medians_of_batches(tmp_path: Path) -> None:
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": None, "seed": 0}},
        "knobs": {"speed": ["fast"], "batch_size": [2]},
        "run": {"output_dir": str(tmp_path), "num_runs_per_sample": 3, "progress": False},
    }
    res = run_sweep(cfg, adapter=LoopAdapter(), dataset=ListDataset.synthetic(4, name="mine"))
    (rec,) = res.records.values()
    for r in rec["per_sample_results"]:
        assert len(r["runs"]) == 3
        for f in ("T_total", "T_ttft", "throughput_samples_s"):
            vals = sorted(run[f] for run in r["runs"])
            assert r[f] == pytest.approx(vals[1])  # the median of 3 runs


@pytest.mark.slow  # real runner sweeps (make test runs them)
@pytest.mark.parametrize("which", ["ref_dir", "dense_dir", "loop_dir"])
def test_report_md_has_the_cost_of_every_configuration(
    which: str, request: pytest.FixtureRequest
) -> None:
    """report.md's Cost section: a row per record with its n, TTFT p50 [lo, hi] and peak
    memory from the record; ITL only where the stages are batched (a looped adapter has none)."""
    d = request.getfixturevalue(which)
    text = (d / "report.md").read_text()
    assert "## Cost" in text
    section = text.split("## Cost", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| configuration"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    table = {
        cells[0]: dict(zip(cols, cells, strict=True))
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| configuration")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    recs = records.load_records(d)
    assert len(table) == len(recs)
    for rec in recs.values():
        name = " ".join(f"{k}={v}" for k, v in rec["knobs"].items())
        row, s = table[name], rec["aggregate_stats"]
        assert row["n"] == str(rec["num_samples"])
        assert row["TTFT p50 ms"] == (
            f"{s['T_ttft_p50']:.2f} [{s['T_ttft_p50_lo']:.2f}, {s['T_ttft_p50_hi']:.2f}]"
        )
        assert float(row["peak MB"]) == pytest.approx(s["peak_memory_bytes_max"] / 2**20, abs=0.05)
        if which == "loop_dir":
            assert row["ITL steps"] == "0" and "ITL p99 ms" not in row  # no per-step times
        else:
            assert int(row["ITL steps"]) == s["itl_ms_count"] > 0
