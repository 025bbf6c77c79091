"""Records: aggregate statistics, percentile warnings, file names, atomic JSON, loading."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from knoblab.profiling import records as rec


def test_aggregates_match_numpy_linear_percentiles() -> None:
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 10.0, size=137)
    rows = [{"T_total": float(v), "output_tokens": 3} for v in x]
    stats, warns = rec.aggregate_stats(rows, ["T_total", "output_tokens"])
    assert stats["T_total_count"] == 137
    assert stats["T_total_mean"] == pytest.approx(x.mean())
    assert stats["T_total_std"] == pytest.approx(x.std(ddof=1))
    assert stats["T_total_min"] == pytest.approx(x.min()) and stats["T_total_max"] == pytest.approx(
        x.max()
    )
    for s, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert stats[f"T_total_{s}"] == pytest.approx(np.percentile(x, q))
    assert stats["output_tokens_std"] == 0.0
    assert warns == []
    assert set(stats) == {f"{m}_{s}" for m in ("T_total", "output_tokens") for s in rec.STATS}


def test_every_default_figure_has_every_stat() -> None:
    row = {
        "T_vision_total": 1.0,
        "T_LLM_prefill": 2.0,
        "T_LLM_decode": 3.0,
        "T_total": 6.5,
        "T_decode_per_token": 1.5,
        "actual_vision_tokens": 280,
        "target_vision_tokens": 288,
        "input_text_tokens": 5,
        "output_tokens": 3,
        "actual_num_crops": 1,
    }
    stats, _ = rec.aggregate_stats([row, row])
    for m in rec.LATENCY_FIELDS + rec.TOKEN_FIELDS:
        for s in rec.STATS:
            assert f"{m}_{s}" in stats
    assert stats["vision_tokens_mean"] == 280 and stats["vision_tokens_diff_mean"] == 8


def test_missing_values_are_left_out_and_counted() -> None:
    stats, _ = rec.aggregate_stats(
        [{"T_decode_per_token": None}, {"T_decode_per_token": 2.0}], ["T_decode_per_token"]
    )
    assert stats["T_decode_per_token_count"] == 1 and stats["T_decode_per_token_mean"] == 2.0
    stats, _ = rec.aggregate_stats([{}], ["T_total"])
    assert stats["T_total_count"] == 0 and stats["T_total_p99"] is None


@pytest.mark.parametrize(
    ("n", "flagged"),
    [
        (1, ["p50", "p95", "p99"]),
        (2, ["p95", "p99"]),
        (19, ["p95", "p99"]),
        (20, ["p99"]),
        (50, ["p99"]),
        (99, ["p99"]),
        (100, []),
    ],
)
def test_percentile_warning_rule(n: int, flagged: list[str]) -> None:
    _, warns = rec.aggregate_stats([{"T_total": float(i)} for i in range(n)], ["T_total"])
    assert [w.split()[0] for w in warns] == flagged
    assert all(f"rests on {n} samples" in w for w in warns)
    assert (
        rec.min_samples_for(99) == 100
        and rec.min_samples_for(95) == 20
        and rec.min_samples_for(50) == 2
    )


def test_file_names_follow_the_seed() -> None:
    knobs = {"tier": "medium", "top_k": 12, "num_active_blocks": 16}
    assert (
        rec.record_filename("coco_2014_vqa", knobs, 6.2)
        == "coco-2014-vqa_imgsizetier-medium_crops6_topk12_blocks16.json"
    )
    tokens = {"vision_tokens": 1008, "top_k": 8, "num_active_blocks": 14}
    assert (
        rec.record_filename("coco-2014-vqa", tokens)
        == "coco-2014-vqa_imgsizetokens1008_topk8_blocks14.json"
    )
    assert rec.record_filename("t", {"top_k": 2}) == "t_topk2.json"
    assert rec.record_filename(
        "t", {"tier": "low", "top_k": 1, "num_active_blocks": 2, "dtype": "bf16"}, None
    ) == ("t_imgsizetier-low_cropsna_topk1_blocks2_dtypebf16.json")


def test_atomic_write_and_load(tmp_path) -> None:
    rec.write_json_atomic(
        tmp_path / "a.json", {"knobs": {"top_k": 1}, "per_sample_results": [], "x": float("nan")}
    )
    assert json.loads((tmp_path / "a.json").read_text())["x"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".b.json.{dead.pid}.tmp").write_text("{half")  # a killed writer's leftover
    (tmp_path / f".c.json.{os.getpid()}.tmp").write_text("{half")  # a live writer's file
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "sweep.json").write_text(json.dumps({"identity": {}}))
    loaded = rec.load_records(tmp_path)
    assert list(loaded) == ["a.json"]
    assert rec.remove_stale_tmp(tmp_path) == [f".b.json.{dead.pid}.tmp"]
    assert (tmp_path / f".c.json.{os.getpid()}.tmp").exists()


def test_environment_has_versions_device_seed_and_git(tmp_path) -> None:
    env = rec.environment_info(device="cpu", dtype="float32", seed=7, sampling={"total_samples": 3})
    assert env["packages"]["torch"] and env["packages"]["numpy"]
    assert env["device_name"] and env["seed"] == 7 and env["sampling"]["total_samples"] == 3
    assert "git_revision" in env
    assert rec.git_revision(tmp_path) is None
    assert (
        os.path.basename(rec.write_json_atomic(tmp_path / "environment.json", env))
        == "environment.json"
    )
