"""Sweep tracking end to end: a tiny reference-model sweep, then ``analyze``, read back from
each tool's own files (TensorBoard event files, the MLflow file store, W&B's offline run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knoblab import cli
from knoblab.profiling import records as rec
from knoblab.profiling import tracking

# 2 configurations (top_k 1 and 2) x 2 samples, the reference model
SMALL = [
    "dataset.size=8",
    "dataset.sampling.num_samples_per_epoch=2",
    "run.warmup_runs=0",
    "run.max_new_tokens=2",
    "knobs.tier=[low]",
    "knobs.top_k=[1,2]",
    "knobs.num_active_blocks=[2]",
    "design=full",
    "run.progress=false",
]


def _sweep_then_analyze(
    tmp_path: Path, logger: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[Path, dict[str, Any], dict[int, dict[str, Any]]]:
    """(the results dir, tracking.json, {top_k: record}) after profile + analyze."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["profile", "run.output_dir=results", f"run.logger={logger}", *SMALL])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "results" / "shapes-vqa"
    state = json.loads((out / "tracking.json").read_text())
    assert state["logger"] == logger and state["run_id"]
    code = cli.main(["analyze", "results/shapes-vqa", f"run.logger={logger}"])
    assert code == 0, capsys.readouterr().err
    assert f"analysis logged to {logger}: run {state['run_id']}" in capsys.readouterr().out
    records = {r["knobs"]["top_k"]: r for r in rec.load_records(out).values()}
    assert sorted(records) == [1, 2]
    return out, state, records


def test_tensorboard(tmp_path, monkeypatch, capsys) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, state, records = _sweep_then_analyze(tmp_path, "tensorboard", monkeypatch, capsys)
    logdir = Path(state["run_id"])
    assert logdir == (tmp_path / "results" / "tensorboard" / "shapes-vqa")
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.TENSORS: 0, ea.SCALARS: 0})
    acc.Reload()
    # one scalar per configuration, stepped by the order the sweep finished them (the
    # interleaved schedule finishes both in its last round, in that round's order)
    accs = [e.value for e in acc.Scalars("configurations/accuracy")]
    p95 = [e.value for e in acc.Scalars("configurations/T_total_p95")]
    got = sorted(zip(p95, accs, strict=True))
    want = sorted((r["aggregate_stats"]["T_total_p95"], r["accuracy"]) for r in records.values())
    assert [v for pair in got for v in pair] == pytest.approx([v for pair in want for v in pair])
    tags = acc.Tags()["tensors"]
    assert "environment/text_summary" in tags and "artifacts/report.md/text_summary" in tags
    env_text = acc.Tensors("environment/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(env_text)["packages"]["torch"]  # the environment, as JSON
    assert "artifacts/analysis.md/text_summary" in tags  # logged by knoblab analyze
    # the HPARAMS table: one session (row) per configuration, knobs as hyperparameters
    sessions = sorted(p for p in logdir.iterdir() if p.is_dir() and p.name.startswith("config_"))
    assert len(sessions) == 2
    seen = []
    for s in sessions:
        a = ea.EventAccumulator(str(s))
        a.Reload()
        content = a.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        seen.append(info.hparams["knob/top_k"].number_value)
        top_k = int(info.hparams["knob/top_k"].number_value)
        assert a.Scalars("hparam/accuracy")[0].value == pytest.approx(records[top_k]["accuracy"])
    assert sorted(seen) == [1.0, 2.0]
    # the reports, copied beside the events: the sweep's, then the analysis's
    assert (logdir / "artifacts" / "report.md").read_text() == (out / "report.md").read_text()
    assert (logdir / "artifacts" / "report.html").exists()


def test_mlflow_file_store(tmp_path, monkeypatch, capsys) -> None:
    from mlflow import MlflowClient

    out, state, records = _sweep_then_analyze(tmp_path, "mlflow", monkeypatch, capsys)
    assert state["uri"] == (tmp_path / "results" / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=state["uri"])
    parent = client.get_run(state["run_id"])
    assert parent.info.status == "FINISHED" and parent.info.run_name == "shapes-vqa"
    assert parent.data.params["env/device"] == "cpu"
    children = client.search_runs(
        [state["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{state['run_id']}'"
    )
    assert len(children) == 2  # one row per configuration
    for child in children:
        top_k = int(child.data.params["knob/top_k"])
        r = records[top_k]
        assert child.data.params["status"] == "ok"
        assert child.data.metrics["accuracy"] == pytest.approx(r["accuracy"])
        assert child.data.metrics["T_total_p95"] == pytest.approx(
            r["aggregate_stats"]["T_total_p95"]
        )
        assert child.data.metrics["T_LLM_prefill_p50"] == pytest.approx(
            r["aggregate_stats"]["T_LLM_prefill_p50"]
        )
        assert child.data.metrics["num_samples"] == 2
    artifacts = {a.path for a in client.list_artifacts(state["run_id"])}
    assert {"report.md", "environment.json", "configurations.json"} <= artifacts
    assert {"report.html", "analysis.md"} <= artifacts  # logged by knoblab analyze
    table = json.loads(
        Path(
            client.download_artifacts(state["run_id"], "configurations.json", str(tmp_path))
        ).read_text()
    )
    assert sorted(row["knob/top_k"] for row in table) == [1, 2]


def test_wandb_offline(tmp_path, monkeypatch, capsys) -> None:
    out, state, records = _sweep_then_analyze(tmp_path, "wandb", monkeypatch, capsys)
    runs = sorted((tmp_path / "results" / "wandb").glob(f"offline-run-*-{state['run_id']}"))
    assert len(runs) == 2  # the sweep, then the analysis resuming the same run id
    files = runs[0] / "files"
    assert (files / "report.md").read_text() == (out / "report.md").read_text()
    env = json.loads((files / "environment.json").read_text())
    assert env["device"] == "cpu" and env["packages"]["torch"]
    (table_file,) = (files / "media" / "table").glob("configurations_*.table.json")
    table = json.loads(table_file.read_text())
    cols = table["columns"]
    rows = {
        row[cols.index("knob/top_k")]: dict(zip(cols, row, strict=True)) for row in table["data"]
    }
    assert sorted(rows) == [1, 2]  # one row per configuration
    for k, row in rows.items():
        assert row["accuracy"] == pytest.approx(records[k]["accuracy"])
        assert row["T_total_p95"] == pytest.approx(records[k]["aggregate_stats"]["T_total_p95"])
    assert (runs[1] / "files" / "report.html").exists()


def test_missing_package_or_unknown_logger_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util, "find_spec", lambda n: None if n == "mlflow" else real(n)
    )
    monkeypatch.chdir(tmp_path)
    assert cli.main(["profile", "run.output_dir=r", "run.logger=mlflow", *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'knoblab[mlflow]'" in err
    assert "run.logger='mlflow'" in err
    assert not list((tmp_path / "r" / "shapes-vqa").glob("*_topk*.json"))  # nothing measured
    assert cli.main(["analyze", "r", "run.logger=mlflow"]) == 2
    assert "knoblab[mlflow]" in capsys.readouterr().err
    assert cli.main(["profile", "run.output_dir=r", "run.logger=comet", *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert "run.logger='comet'" in err and "none, tensorboard, mlflow, wandb" in err


def test_record_row_takes_memory_figures_when_present() -> None:
    record = {
        "knobs": {"tier": "low", "top_k": 2},
        "status": "ok",
        "num_samples": 3,
        "accuracy": 0.5,
        "aggregate_stats": {"T_total_p95": 12.0, "T_total_p50": None, "peak_memory_mb_max": 80.0},
        "memory": {"peak_allocated_mb": 75.5, "device": "cuda:0"},
        "per_sample_results": [{"peak_memory_mb": 1.0}],
    }
    row = tracking.record_row(record)
    assert row["knob/tier"] == "low" and row["knob/top_k"] == 2
    assert row["T_total_p95"] == 12.0 and "T_total_p50" not in row
    assert row["peak_memory_mb_max"] == 80.0 and row["memory/peak_allocated_mb"] == 75.5
    assert "memory/device" not in row and not any("per_sample" in k for k in row)
