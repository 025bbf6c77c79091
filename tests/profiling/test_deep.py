"""Stage 2: traces and operator tables per configuration; sampling overrides; nsys wrapping."""

from __future__ import annotations

import gzip
import io
import json
import warnings

import pytest

from knoblab.errors import ConfigError
from knoblab.profiling import deep as deep_mod
from knoblab.profiling.deep import deep_profile, nsys_command


def _cfg(tmp_path, **deep):
    return {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": 3, "seed": 5}},
        "knobs": {"tier": ["low", "high"], "top_k": [1, 4], "num_active_blocks": [2]},
        "design": {"name": "full"},
        "run": {"warmup_runs": 1, "max_new_tokens": 3},
        "deep": {"output_dir": str(tmp_path), **deep},
    }


def test_first_sample_minimal_writes_trace_and_table_per_config(tmp_path, adapter, dataset) -> None:
    index = deep_profile(_cfg(tmp_path), adapter=adapter, dataset=dataset)
    out = tmp_path / "synthetic"
    assert len(index["configurations"]) == 4 and index["profiled_sample_ids"] == [0]
    for c in index["configurations"]:
        assert c["trace"] == f"trace_config_{c['index']}.json.gz"  # gzip'd by default
        trace = json.loads(gzip.decompress((out / c["trace"]).read_bytes()))
        names = {e.get("name") for e in trace["traceEvents"]}
        assert {"vision", "prefill", "decode"} <= names  # the stage ranges
        assert c["operator_table"] == f"profiler_results_config_{c['index']}_sample_0.txt"
        table = (out / c["operator_table"]).read_text()
        assert "Self CPU" in table and "prefill" in table
        assert (out / c["operators_csv"]).read_text().startswith("name,count,")
    saved = json.loads((out / "deep_profile.json").read_text())
    assert saved["mode"] == "minimal" and saved["environment"]["seed"] == 5
    assert saved["traces"]["gzip"] and saved["traces"]["skipped_configurations"] == []
    written = sum((out / c["trace"]).stat().st_size for c in index["configurations"])
    assert saved["traces"]["written_mb"] == pytest.approx(written / 2**20, abs=1e-3)


def test_plain_json_traces_when_gzip_is_off(tmp_path, adapter, dataset) -> None:
    index = deep_profile(
        _cfg(tmp_path, gzip=False, configurations=[{"top_k": 1}]), adapter=adapter, dataset=dataset
    )
    trace = tmp_path / "synthetic" / index["configurations"][0]["trace"]
    assert trace.name == "trace_config_0.json"
    assert "prefill" in {e.get("name") for e in json.loads(trace.read_text())["traceEvents"]}
    with pytest.raises(ConfigError, match="deep.max_trace_mb=0"):
        deep_profile(_cfg(tmp_path, max_trace_mb=0), adapter=adapter, dataset=dataset)


def test_reference_model_all_samples_trace_cap_and_progress_bar(tmp_path) -> None:
    """The real model, samples=all: the cap stops traces after the first; tables go on."""
    from rich.console import Console

    from knoblab.hydra_utils import compose

    cfg = compose(
        "deep_profile",
        [
            f"deep.output_dir={tmp_path}",
            "deep.samples=all",
            "deep.mode=full",
            "deep.max_trace_mb=0.001",  # 1 kB: the first gzip'd trace is already over it
            "dataset.size=8",
            "dataset.sampling.num_samples_per_epoch=2",
            "run.warmup_runs=0",
            "run.max_new_tokens=2",
            "deep.configurations=[{tier: low, top_k: 1},{tier: high, top_k: 2}]",
        ],
    )
    buf = io.StringIO()
    console = Console(file=buf, width=120, force_terminal=False)
    index = deep_profile(cfg, console=console)
    out = tmp_path / "shapes-vqa"
    first, second = index["configurations"]
    assert first["trace"] == "trace_config_0.json.gz" and (out / first["trace"]).exists()
    assert second["trace"] is None and not list(out.glob("trace_config_1*"))
    for c in (first, second):  # stats keep being collected past the cap
        assert "aten::" in (out / c["operator_table"]).read_text()
        assert "\ndecode," in (out / c["operators_csv"]).read_text()
    saved = json.loads((out / "deep_profile.json").read_text())
    assert saved["traces"]["skipped_configurations"] == [1]
    assert saved["traces"]["written_mb"] >= 0.001 and saved["traces"]["max_trace_mb"] == 0.001
    text = buf.getvalue()
    assert text.count("deep.max_trace_mb=0.001 reached") == 1  # one line, once
    assert "4/4" in text  # the bar: 2 configurations x 2 samples


def test_all_samples_full_mode_and_chosen_configurations(tmp_path, adapter, dataset) -> None:
    cfg = _cfg(tmp_path, mode="full", samples="all", configurations=[{"tier": "high", "top_k": 2}])
    index = deep_profile(cfg, adapter=adapter, dataset=dataset)
    assert [c["knobs"] for c in index["configurations"]] == [{"tier": "high", "top_k": 2}]
    assert index["profiled_sample_ids"] == [0, 1, 2]
    assert (tmp_path / "synthetic" / "profiler_results_config_0_all.txt").exists()
    cfg = _cfg(tmp_path, configurations=[{"tier": "huge"}])
    with pytest.raises(ConfigError, match=r"deep.configurations\[0\].tier='huge'"):
        deep_profile(cfg, adapter=adapter, dataset=dataset)
    with pytest.raises(ConfigError, match="deep.mode='max'"):
        deep_profile(_cfg(tmp_path, mode="max"), adapter=adapter, dataset=dataset)


def test_legacy_stage1_repeats_maps_with_future_warning(tmp_path, adapter, dataset) -> None:
    cfg = _cfg(tmp_path, samples="all", configurations=[{"top_k": 1}])
    cfg["dataset"]["sampling"] = {
        "num_samples_per_epoch": None,
        "num_epochs": 1,
        "randomize": False,
        "seed": None,
    }
    cfg["run"]["stage1_repeats"] = 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = deep_profile(cfg, adapter=adapter, dataset=dataset)
    assert any(
        issubclass(w.category, FutureWarning) and "run.stage1_repeats=4" in str(w.message)
        for w in caught
    )
    assert index["profiled_sample_ids"] == [0, 1, 2, 3]
    assert "dataset.sampling.num_samples_per_epoch=4" in index["stage1_overrides"]
    assert "dataset.sampling.randomize=false" in index["stage1_overrides"]


def test_nsys_wrapping(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(deep_mod.shutil, "which", lambda name: None)
    assert nsys_command(["deep.mode=full"], tmp_path) is None
    with pytest.warns(UserWarning, match="nsys is not on the PATH"):
        assert deep_mod.maybe_wrap_in_nsys(_cfg(tmp_path, nsys=True), []) is None
    monkeypatch.setattr(deep_mod.shutil, "which", lambda name: "/usr/bin/nsys")
    cmd = nsys_command(["deep.mode=full"], tmp_path)
    assert (
        cmd is not None
        and cmd[:2] == ["/usr/bin/nsys", "profile"]
        and "--trace=cuda,nvtx,osrt" in cmd
    )
    assert cmd[-2:] == ["deep-profile", "deep.mode=full"]
    ran = []
    monkeypatch.setattr(deep_mod, "nsys_command", lambda argv, out: ["true"])
    import subprocess

    monkeypatch.setattr(
        subprocess,
        "run",
        lambda cmd, env, check: (
            ran.append(env[deep_mod.NSYS_ENV]) or subprocess.CompletedProcess(cmd, 0)
        ),
    )
    assert deep_mod.maybe_wrap_in_nsys(_cfg(tmp_path, nsys=True), []) == 0 and ran == ["1"]
    monkeypatch.setenv(deep_mod.NSYS_ENV, "1")  # the child profiles in-process
    assert deep_mod.maybe_wrap_in_nsys(_cfg(tmp_path, nsys=True), []) is None
