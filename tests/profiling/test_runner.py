"""The sweep runner: records, same samples everywhere, reruns, refusals, failures, OOM."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from knoblab.errors import ConfigError, DataError, KnobLabError
from knoblab.profiling import records as rec
from knoblab.profiling.runner import run_sweep, run_sweeps
from knoblab.profiling.synthetic import ListDataset, WaitAdapter

SEED_FIELDS = [
    "tier",
    "tier_range",
    "selected_crops_mean",
    "selected_crops_distribution",
    "target_vision_tokens_mean",
    "actual_vision_tokens_mean",
    "max_crops",
    "top_k",
    "num_active_blocks",
    "num_total_blocks",
    "active_block_indices",
    "accuracy",
    "accuracy_std",
    "num_samples",
    "theoretical_num_crops",
    "theoretical_tiling",
    "theoretical_image_size",
    "theoretical_vision_tokens",
    "aggregate_stats",
    "per_sample_results",
]
SAMPLE_FIELDS = [
    "sample_id",
    "target_vision_tokens",
    "target_crops",
    "actual_vision_tokens",
    "top_k",
    "num_active_blocks",
    "input_text_tokens",
    "output_tokens",
    "theoretical_num_crops",
    "theoretical_tiling",
    "theoretical_image_size",
    "theoretical_vision_tokens",
    "actual_num_crops",
    "actual_tiling",
    "actual_image_size",
    "accuracy",
    "pred",
    "metadata",
    "T_vision_total",
    "T_LLM_prefill",
    "T_LLM_decode",
    "T_total",
    "T_decode_per_token",
    "runs",
    "status",
    "error",
]


def _files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.iterdir()) if p.suffix == ".json"}


def test_sweep_writes_seed_records_same_samples_everywhere(
    sweep_cfg, tmp_path, adapter, dataset
) -> None:
    res = run_sweep(sweep_cfg(tmp_path), adapter=adapter, dataset=dataset)
    out = tmp_path / "synthetic"
    assert res.out_dir == out and len(res.ran) == 10 and not res.skipped
    assert {"sweep.json", "environment.json", "samples.parquet", "report.md"} <= {
        p.name for p in out.iterdir()
    }
    assert "synthetic_imgsizetier-low_crops2_topk1_blocks2.json" in res.records
    ids = set()
    for fname, r in res.records.items():
        assert fname == rec.record_filename("synthetic", r["knobs"], r["selected_crops_mean"])
        for key in SEED_FIELDS + [
            "task",
            "model",
            "knobs",
            "status",
            "warnings",
            "environment",
            "sampling",
        ]:
            assert key in r, key
        assert r["status"] == "ok" and r["num_samples"] == 6
        assert r["tier_range"]["max_crops"] >= r["tier_range"]["min_crops"]
        assert (
            r["num_total_blocks"] == 6 and len(r["active_block_indices"]) == r["num_active_blocks"]
        )
        ids.add(tuple(s["sample_id"] for s in r["per_sample_results"]))
        s = r["per_sample_results"][0]
        for key in SAMPLE_FIELDS:
            assert key in s, key
        assert s["metadata"]["question"] and s["metadata"]["answers"] and s["metadata"]["image_id"]
        assert len(s["runs"]) == 2  # num_runs_per_sample, every run kept
        assert s["T_total"] == pytest.approx(
            sorted(x["T_total"] for x in s["runs"])[0] / 2
            + sorted(x["T_total"] for x in s["runs"])[1] / 2
        )
        assert s["T_decode_per_token"] == pytest.approx(
            s["T_LLM_decode"] / (s["output_tokens"] - 1), rel=0.5
        )
        assert r["aggregate_stats"]["T_total_count"] == 6
        assert r["environment"]["seed"] == 1 and r["sampling"]["sample_ids"] == list(range(6))
    assert ids == {tuple(range(6))}  # every configuration saw the same samples
    accs = {
        r["knobs"]["tier"] + str(r["knobs"]["top_k"]) + str(r["knobs"]["num_active_blocks"]): r[
            "accuracy"
        ]
        for r in res.records.values()
    }
    assert accs["high46"] == 1.0 and accs["low12"] < 1.0
    df = pd.read_parquet(out / "samples.parquet")
    assert len(df) == 10 * 6 and {"record", "knob_tier", "T_total", "pred", "runs"} <= set(
        df.columns
    )
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["identity"]["sample_ids"] == list(range(6)) and sweep["knob_lists"] == [
        sweep_cfg(tmp_path)["knobs"]
    ]
    report = (out / "report.md").read_text()
    assert (
        "num_samples_per_epoch | 6" in report
        and report.count("**\\***") == sum(r["pareto"] for r in res.rows) + 1
    )
    assert any(r["pareto"] for r in res.rows)


def test_rerun_skips_finished_and_extends_with_new_knobs(
    sweep_cfg, tmp_path, adapter, dataset
) -> None:
    first = run_sweep(sweep_cfg(tmp_path), adapter=adapter, dataset=dataset)
    before = _files(tmp_path / "synthetic")
    calls = adapter.calls
    # per configuration: 1 warmup + 6 samples x 2 timed runs; one drift probe per round
    assert first.probes == 6 and calls == 10 * (1 + 6 * 2) + first.probes
    res = run_sweep(sweep_cfg(tmp_path), adapter=adapter, dataset=dataset)
    assert adapter.calls == calls and not res.ran and len(res.skipped) == 10
    after = _files(tmp_path / "synthetic")
    assert {k: v for k, v in after.items() if k not in ("sweep.json",)} == {
        k: v for k, v in before.items() if k != "sweep.json"
    }
    cfg = sweep_cfg(tmp_path, design="full")
    res = run_sweep(cfg, adapter=adapter, dataset=dataset)
    assert len(res.ran) == 17 and len(res.skipped) == 10 and len(res.records) == 27
    assert len(pd.read_parquet(tmp_path / "synthetic" / "samples.parquet")) == 27 * 6


def test_refuses_another_sweeps_directory_and_overwrites_nothing(
    sweep_cfg, tmp_path, adapter, dataset
) -> None:
    run_sweep(sweep_cfg(tmp_path), adapter=adapter, dataset=dataset)
    before = _files(tmp_path / "synthetic")
    with pytest.raises(
        KnobLabError, match=r"samples differ: 6 samples there, 5 now.*new directory"
    ):
        run_sweep(sweep_cfg(tmp_path, n=5), adapter=adapter, dataset=dataset)
    other = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0, name="another-model")
    with pytest.raises(KnobLabError, match="model differs") as e:
        run_sweep(sweep_cfg(tmp_path), adapter=other, dataset=dataset)
    assert "\n" not in str(e.value)
    cfg = sweep_cfg(tmp_path)
    cfg["dataset"]["sampling"] = {"num_samples_per_epoch": 6, "randomize": True, "seed": 3}
    with pytest.raises(KnobLabError, match="samples differ: position 0"):
        run_sweep(cfg, adapter=adapter, dataset=dataset)
    assert _files(tmp_path / "synthetic") == before


def test_failing_sample_is_recorded_and_the_sweep_goes_on(sweep_cfg, tmp_path, dataset) -> None:
    ad = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0, fail_samples=[0, 2])
    res = run_sweep(sweep_cfg(tmp_path), adapter=ad, dataset=dataset)
    for r in res.records.values():
        assert r["status"] == "ok" and r["num_samples"] == 6 and r["num_failed_samples"] == 2
        bad = [s for s in r["per_sample_results"] if s["status"] == "failed"]
        assert [s["sample_id"] for s in bad] == [0, 2]
        assert "DataError: cannot decode image of sample 0" in bad[0]["error"]
        assert r["aggregate_stats"]["T_total_count"] == 4
        assert any("2 of 6 samples failed" in w for w in r["warnings"])


def test_every_sample_failing_marks_the_config_failed(sweep_cfg, tmp_path) -> None:
    ad = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0, fail_samples=list(range(10)))
    res = run_sweep(
        sweep_cfg(tmp_path, design="stratified"), adapter=ad, dataset=ListDataset.synthetic(10)
    )
    assert {r["status"] for r in res.records.values()} == {"failed"}
    assert "every sample failed" in next(iter(res.records.values()))["error"]


def test_oom_configuration_is_recorded_and_the_sweep_moves_on(sweep_cfg, tmp_path, dataset) -> None:
    ad = WaitAdapter(
        vision_ms=0, prefill_ms=0, decode_ms=0, oom_when={"tier": "high", "num_active_blocks": 6}
    )
    res = run_sweep(sweep_cfg(tmp_path), adapter=ad, dataset=dataset)
    status = {
        (r["knobs"]["tier"], r["knobs"]["num_active_blocks"]): r["status"]
        for r in res.records.values()
    }
    assert status[("high", 6)] == "oom" and status[("low", 2)] == "ok"
    assert sum(r["status"] == "oom" for r in res.records.values()) == 2 and len(res.records) == 10
    oom = next(r for r in res.records.values() if r["status"] == "oom")
    assert "OutOfMemoryError" in oom["error"] and oom["per_sample_results"] == []
    assert not any(row["pareto"] for row in res.rows if row["status"] == "oom")
    # A rerun keeps the OOM verdict; retry_failed measures those configurations again.
    again = run_sweep(sweep_cfg(tmp_path), adapter=ad, dataset=dataset)
    assert not again.ran
    ad.oom_when = None
    retry = run_sweep(sweep_cfg(tmp_path, retry_failed=True), adapter=ad, dataset=dataset)
    assert len(retry.ran) == 2 and {r["status"] for r in retry.records.values()} == {"ok"}
    assert len(retry.records) == 10


def test_percentile_warning_in_record_and_on_screen(sweep_cfg, tmp_path, adapter, capsys) -> None:
    res = run_sweep(
        sweep_cfg(tmp_path, n=50, design="stratified"),
        adapter=adapter,
        dataset=ListDataset.synthetic(60),
    )
    r = next(iter(res.records.values()))
    # each figure's own count: every latency figure has 50 values here
    assert (
        "p99 rests on 50 samples (needs >= 100): T_vision_total, T_LLM_prefill, T_LLM_decode, "
        "T_total, T_decode_per_token"
    ) in r["warnings"]
    assert not any(w.startswith("p95") for w in r["warnings"])
    assert "p99 rests on 50 samples" in capsys.readouterr().out


def test_target_tokens_mode_and_legacy_repeats(sweep_cfg, tmp_path, adapter, dataset) -> None:
    cfg = sweep_cfg(tmp_path, n=None, design="full")
    cfg["knobs"] = {"vision_tokens": [288, 1008], "top_k": [2], "num_active_blocks": [4]}
    cfg["repeats"] = 13  # legacy key: 13 > 10 samples -> 2 epochs, the second cut to 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_sweep(cfg, adapter=adapter, dataset=dataset)
    assert any(
        issubclass(w.category, FutureWarning) and "repeats=13" in str(w.message) for w in caught
    )
    assert sorted(res.records) == [
        "synthetic_imgsizetokens1008_topk2_blocks4.json",
        "synthetic_imgsizetokens288_topk2_blocks4.json",
    ]
    r = res.records["synthetic_imgsizetokens1008_topk2_blocks4.json"]
    assert r["num_samples"] == 13 and [s["sample_id"] for s in r["per_sample_results"]] == list(
        range(10)
    ) + [0, 1, 2]
    assert [s["epoch"] for s in r["per_sample_results"]][-4:] == [0, 1, 1, 1]
    assert r["target_vision_tokens_mean"] == 1008 and r["theoretical_num_crops"] == 6
    assert "repeats=13" in (tmp_path / "synthetic" / "report.md").read_text()


def test_bad_input_errors_before_writing(sweep_cfg, tmp_path, adapter, dataset) -> None:
    cfg = sweep_cfg(tmp_path)
    cfg["knobs"]["top_k"] = [1, 3]
    with pytest.raises(
        ConfigError, match=r"knobs.top_k=3 is invalid: allowed is one of \[1, 2, 4\]"
    ):
        run_sweep(cfg, adapter=adapter, dataset=dataset)
    cfg = sweep_cfg(tmp_path)
    cfg["knobs"]["topk"] = [1]
    with pytest.raises(ConfigError, match="did you mean top_k"):
        run_sweep(cfg, adapter=adapter, dataset=dataset)
    cfg = sweep_cfg(tmp_path)
    cfg["knobs"]["top_k"] = []
    with pytest.raises(ConfigError, match=r"knobs.top_k=\[\]"):
        run_sweep(cfg, adapter=adapter, dataset=dataset)
    with pytest.raises(DataError, match="has no samples"):
        run_sweep(sweep_cfg(tmp_path), adapter=adapter, dataset=ListDataset([], name="empty"))
    with pytest.raises(
        ConfigError, match="dataset.metric='bleu' is invalid: allowed is one of vqa"
    ):
        run_sweep(
            sweep_cfg(tmp_path),
            adapter=adapter,
            dataset=ListDataset(dataset.samples, metric="bleu"),
        )
    with pytest.raises(ConfigError, match="run.num_runs_per_sample=0"):
        run_sweep(sweep_cfg(tmp_path, num_runs_per_sample=0), adapter=adapter, dataset=dataset)
    assert not tmp_path.joinpath("synthetic").exists()


def test_several_datasets_one_model(sweep_cfg, tmp_path, adapter, monkeypatch) -> None:
    from knoblab.data import registry

    monkeypatch.setitem(registry.FORMATS, "synthetic", "knoblab.profiling.synthetic:build_dataset")
    cfg = sweep_cfg(tmp_path, design="stratified")
    cfg["datasets"] = [
        {"format": "synthetic", "name": "alpha", "size": 8},
        {"format": "synthetic", "name": "beta", "size": 7},
    ]
    results = run_sweeps(cfg, adapter=adapter)
    assert [r.out_dir.name for r in results] == ["alpha", "beta"]
    assert all(len(r.records) == 27 for r in results)
    assert next(iter(results[1].records.values()))["task"] == "beta"


def test_weights_fingerprint_tells_checkpoints_apart(sweep_cfg, tmp_path, dataset) -> None:
    import torch

    from knoblab.profiling.identity import weights_digest

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 4)
    digest = weights_digest(net)
    assert digest == weights_digest(net)
    with torch.no_grad():
        net.weight[0, 0] += 1.0
    assert weights_digest(net) != digest
    ad = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0)
    ad.model = net  # type: ignore[attr-defined]
    run_sweep(sweep_cfg(tmp_path, design="stratified"), adapter=ad, dataset=dataset)
    with torch.no_grad():
        net.weight[0, 0] += 1.0  # "trained" weights, same name and config
    with pytest.raises(KnobLabError, match="model differs"):
        run_sweep(sweep_cfg(tmp_path, design="stratified"), adapter=ad, dataset=dataset)
