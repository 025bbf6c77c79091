"""Interleaved measurement (the default) against sequential: order, same answers, switches in place."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from knoblab.profiling import records as rec
from knoblab.profiling.journal import JOURNAL
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset, WaitAdapter


class SpyAdapter(WaitAdapter):
    """Logs each ``apply_knobs`` and, per timed prefill, (configuration, sample id)."""

    def __init__(self, **kw: Any):
        super().__init__(vision_ms=0, prefill_ms=0, decode_ms=0, **kw)
        self.applied: list[str] = []
        self.visits: list[tuple[str, int]] = []

    def apply_knobs(self, settings: Any) -> dict[str, Any]:
        self.applied.append(rec.config_key(settings))
        return super().apply_knobs(settings)

    def prefill(self, prepared: Any, vision: Any) -> Any:
        self.visits.append((self.applied[-1], prepared.inputs.sample_id))
        return super().prefill(prepared, vision)


def _cfg(out: Path, schedule: str | None, n: int = 5, **run: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": n, "seed": 1}},
        "knobs": {"tier": ["low", "high"], "top_k": [1, 4], "num_active_blocks": [2]},
        "design": {"name": "full"},
        "run": {"output_dir": str(out), "warmup_runs": 1, "progress": False, **run},
    }
    if schedule is not None:
        cfg["run"]["schedule"] = schedule
    return cfg


def _answers(out: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {
        rec.config_key(r["knobs"]): [
            (s["position"], s["sample_id"], s["pred"], s["accuracy"], s["output_tokens"],
             s["actual_vision_tokens"])
            for s in r["per_sample_results"]
        ]
        for r in rec.load_records(out).values()
    }  # fmt: skip


def test_default_interleaves_in_seeded_rounds_and_sequential_keeps_the_old_order(
    tmp_path: Path,
) -> None:
    spy = SpyAdapter()
    res = run_sweep(
        _cfg(tmp_path / "i", None, drift_probe_every=0),
        adapter=spy,
        dataset=ListDataset.synthetic(8),
    )
    assert len(res.ran) == 4 and not (res.out_dir / JOURNAL).exists()  # removed once final
    keys = sorted(rec.config_key(r["knobs"]) for r in res.records.values())
    timed, warmed = [], set()
    for key, sid in spy.visits:
        if key not in warmed:  # a configuration's first visit starts with its warmup
            warmed.add(key)
            continue
        timed.append((key, sid))
    # round r measures plan position r at every configuration, before round r + 1 starts
    assert [sid for _, sid in timed] == [r for r in range(5) for _ in range(4)]
    rounds = [[k for k, sid in timed if sid == r] for r in range(5)]
    assert all(sorted(x) == keys for x in rounds)
    assert len({tuple(x) for x in rounds}) > 1  # each round draws its own order

    seq = SpyAdapter()
    run_sweep(
        _cfg(tmp_path / "s", "sequential", drift_probe_every=0),
        adapter=seq,
        dataset=ListDataset.synthetic(8),
    )
    assert len(seq.applied) == 4  # one switch per configuration
    # interleaved: knobs switch in place (no reload) whenever the next unit's differ
    order = [k for k, _ in timed]
    assert len(spy.applied) == 1 + sum(a != b for a, b in zip(order, order[1:], strict=False))
    assert len(spy.applied) >= 4 * 4
    again = SpyAdapter()
    run_sweep(
        _cfg(tmp_path / "i2", None, drift_probe_every=0),
        adapter=again,
        dataset=ListDataset.synthetic(8),
    )
    assert again.visits == spy.visits  # the same seed draws the same rounds


def test_wait_adapter_answers_the_same_interleaved_or_sequential(tmp_path: Path) -> None:
    ds = ListDataset.synthetic(8)
    run_sweep(_cfg(tmp_path / "i", "interleaved"), adapter=WaitAdapter(wait="sleep"), dataset=ds)
    run_sweep(_cfg(tmp_path / "s", "sequential"), adapter=WaitAdapter(wait="sleep"), dataset=ds)
    a, b = _answers(tmp_path / "i" / "synthetic"), _answers(tmp_path / "s" / "synthetic")
    assert len(a) == 4 and a == b


@pytest.mark.slow
def test_reference_model_switches_back_and_forth_with_the_same_answers(tmp_path: Path) -> None:
    """The real reference VLM: knobs applied in place, A -> B -> A gives A's answers again."""
    from knoblab.data.shapes import ShapesVQA
    from knoblab.models.registry import build_adapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = build_adapter({"kind": "reference"}, {"device": "cpu"})
    ds = ShapesVQA(12)
    cfg = {
        "dataset": {"name": "shapes-vqa", "sampling": {"num_samples_per_epoch": 4, "seed": 0}},
        "knobs": {"tier": ["low", "high"], "top_k": [1, 4], "num_active_blocks": [2, 4]},
        "design": {"name": "stratified"},
        "run": {"warmup_runs": 0, "progress": False, "max_new_tokens": 4},
    }
    out = {}
    for mode in ("interleaved", "sequential"):
        cfg["run"] |= {"output_dir": str(tmp_path / mode), "schedule": mode}
        res = run_sweep(cfg, adapter=adapter, dataset=ds)
        assert len(res.ran) >= 4
        out[mode] = _answers(res.out_dir)
    assert out["interleaved"] == out["sequential"]
    preds = {tuple(p for _, _, p, *_ in v) for v in out["interleaved"].values()}
    assert len(preds) > 1  # the configurations do answer differently: the check can fail
    env = json.loads((tmp_path / "interleaved" / "shapes-vqa" / "environment.json").read_text())
    assert env["schedule"]["mode"] == "interleaved" and env["drift"]["probes"] == 4


def test_records_are_made_durable_together_before_the_journal_goes(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The loop writes each record without fsync (the journal backs it); every record is
    fsynced, then its folder, before journal.jsonl is removed."""
    import os

    from knoblab.profiling.journal import Journal

    events: list[tuple[str, str]] = []
    real_fsync, real_remove = os.fsync, Journal.remove

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def remove(self: Journal) -> None:
        events.append(("remove", str(self.path)))
        real_remove(self)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Journal, "remove", remove)
    res = run_sweep(
        _cfg(tmp_path / "out", None, n=3), adapter=SpyAdapter(), dataset=ListDataset.synthetic(3)
    )
    out = res.out_dir
    names = sorted(rec.load_records(out))
    assert len(names) == 4 and not (out / JOURNAL).exists()
    at = events.index(("remove", str(out / JOURNAL)))
    synced = [p for kind, p in events[:at] if kind == "fsync"]
    # no record fsync in the loop; then all four records together, then their folder
    records = {str(out / n) for n in names}
    assert not [p for p in synced if any(p.endswith(f".{n}.{os.getpid()}.tmp") for n in names)]
    assert sorted(p for p in synced if p in records) == sorted(records)  # each once
    assert set(synced[-5:-1]) == records and synced[-1] == str(out)
