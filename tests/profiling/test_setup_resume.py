"""The runner's setup and resume steps, each on its own."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from knoblab.errors import ConfigError, DataError, KnobLabError
from knoblab.profiling import records as rec
from knoblab.profiling.journal import Journal
from knoblab.profiling.prepare import setup_sweep, sweep_identity
from knoblab.profiling.resume import resume_state
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset, WaitAdapter


def _cfg(out: Path, **run: Any) -> dict[str, Any]:
    return {
        "dataset": {"name": "toy", "sampling": {"num_samples_per_epoch": 5, "seed": 2}},
        "knobs": {"tier": ["low", "high"], "top_k": [1], "num_active_blocks": [2, 4]},
        "design": {"name": "full"},
        "run": {"output_dir": str(out), "warmup_runs": 0, "progress": False, **run},
    }


def test_setup_reads_config_dataset_plan_and_design_without_touching_disk(tmp_path: Path) -> None:
    s = setup_sweep(
        _cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset.synthetic(9, name="toy")
    )
    assert len(s.configs) == 4 and len(s.plan) == 5 and s.task == "toy"
    assert s.out_dir == tmp_path / "toy" and not s.out_dir.exists()
    assert s.stream() == [(p, 0, p) for p in range(5)] and s.rounds() == [[p] for p in range(5)]
    assert s.run.schedule == "interleaved"
    sweep_identity(s, None)
    assert s.identity["sample_ids"] == list(range(5))
    assert s.environment["schedule"] == {"mode": "interleaved", "seed": 0}
    with pytest.raises(ConfigError, match="run.schedule='random'"):
        setup_sweep(_cfg(tmp_path, schedule="random"), adapter=WaitAdapter(),
                    dataset=ListDataset.synthetic(9, name="toy"))  # fmt: skip
    with pytest.raises(DataError, match="no samples"):
        setup_sweep(_cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset([]))
    # a chosen list of configurations (deep-profile's deep.configurations) replaces the design
    s = setup_sweep(
        _cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset.synthetic(9, name="toy"),
        choose=lambda data, ad, design: [{"tier": "low"}],
    )  # fmt: skip
    assert s.configs == [{"tier": "low"}]


def test_two_ranks_share_rounds_of_strided_positions(tmp_path: Path) -> None:
    s = setup_sweep(
        _cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset.synthetic(9, name="toy")
    )
    s.rank, s.world = 1, 2
    assert [p for p, _, _ in s.stream()] == [1, 3] and s.rounds() == [[0, 1], [2, 3], [4]]


def test_resume_state_reads_records_and_journal(tmp_path: Path) -> None:
    ad, ds = (
        WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0),
        ListDataset.synthetic(9, name="toy"),
    )
    run_sweep(_cfg(tmp_path), adapter=ad, dataset=ds)
    folder = tmp_path / "toy"
    first = sorted(rec.load_records(folder))[0]
    done_key = rec.config_key(rec.load_records(folder)[first]["knobs"])
    (folder / first).unlink()  # that configuration is left to measure, two samples journaled
    j = Journal.open(folder, keep=lambda k: True)
    j.append(done_key, {}, [{"position": 0, "status": "ok"}, {"position": 3, "status": "ok"}])
    other = next(k for k in map(rec.config_key, setup_cfgs(tmp_path)) if k != done_key)
    j.append(other, {}, [{"position": 1, "status": "ok"}])  # stale: that one has its record
    j.close()
    s = setup_sweep(_cfg(tmp_path), adapter=ad, dataset=ds)
    sweep_identity(s, None)
    with ExitStack() as locks:
        state = resume_state(s, locks)
        assert len(state.done) == 3 and done_key not in state.done
        assert state.journaled == {done_key: {0, 3}}  # the stale key was compacted away
        assert [c for c in state.todo(s.configs)] == [c for c in s.configs
                                                       if rec.config_key(c) == done_key]  # fmt: skip
        assert len(state.skipped(s.configs)) == 3
        with pytest.raises(KnobLabError, match="in use by another sweep"):  # the lock is held
            run_sweep(_cfg(tmp_path), adapter=ad, dataset=ds)
    res = run_sweep(_cfg(tmp_path), adapter=ad, dataset=ds)
    assert res.ran == [first] and ad.calls  # only the missing configuration, and it is final
    assert [s["position"] for s in res.records[first]["per_sample_results"]] == list(range(5))


def setup_cfgs(tmp_path: Path) -> list[dict[str, Any]]:
    return setup_sweep(
        _cfg(tmp_path), adapter=WaitAdapter(), dataset=ListDataset.synthetic(9, name="toy")
    ).configs
