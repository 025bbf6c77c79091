"""benchmarks/bench_overhead.py: its passes measure what they claim (no timing asserted)."""

from __future__ import annotations

import pytest

LISTS = {"tier": ["low", "high"], "top_k": [1, 4], "num_active_blocks": [4]}


def test_every_breakdown_variant_still_measures_every_configuration(capsys, load_bench) -> None:
    """C leaves one part of the runner out per variant: each variant's sweep still ends
    with every configuration ok (a stub that broke the runner would read as cheap)."""
    load_bench("bench_overhead").breakdown(LISTS, 6, rounds=1)
    out = capsys.readouterr().out
    for part in (
        "memory span per unit",
        "bootstrap intervals",
        "journal writes",
        "the whole record",
    ):
        assert f"without {part}" in out


def test_a_broken_sweep_is_refused_not_timed(monkeypatch, load_bench) -> None:
    import knoblab.profiling.runner as runner
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    class Broken:
        def __init__(self, *a, **k) -> None: ...

        def __enter__(self):
            raise RuntimeError("no span here")

        def __exit__(self, *a) -> None: ...

    monkeypatch.setattr(runner, "MemorySpan", Broken)
    zero = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0)
    with pytest.raises(RuntimeError, match="did not measure every configuration"):
        load_bench("bench_overhead").zero_sweep(zero, ListDataset.synthetic(4), LISTS, 4, 1, 4)


def test_model_time_counts_only_the_calls_inside_the_model(load_bench) -> None:
    """D's clock: the bare loop's time inside the wrapped calls is most of its wall time on
    a model that sleeps in its stages, and the wrapped adapter still answers."""
    from knoblab.profiling.design import make_design
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    bench = load_bench("bench_overhead")
    ad = WaitAdapter(vision_ms=1, prefill_ms=1, decode_ms=1)
    clock = bench.ModelTime(ad, ListDataset.synthetic(5))
    wall, _ = bench.bare_loop(ad, clock.dataset, make_design("full", LISTS), [0, 1], 1, 1, 3)
    assert 0.5 * wall < clock.seconds <= wall
    assert len(clock.dataset) == 5 and clock.dataset.metric == ListDataset.synthetic(5).metric


def test_the_minimal_loop_keeps_one_line_per_measured_sample(tmp_path, load_bench) -> None:
    """E's loop makes the bare loop's calls and appends one fixed-size line per measured
    sample (configuration, round, two marks, the peak) with one write each."""
    import os
    import struct

    from knoblab.profiling.design import make_design
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    bench = load_bench("bench_overhead")
    configs = make_design("full", LISTS)
    fd = os.open(tmp_path / "j.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        ad = WaitAdapter(vision_ms=0, prefill_ms=0, decode_ms=0)
        bench.bare_loop(ad, ListDataset.synthetic(3), configs, [0, 1, 2], 0, 1, 3,
                        keep=bench.minimal_keep(fd))  # fmt: skip
    finally:
        os.close(fd)
    data = (tmp_path / "j.bin").read_bytes()
    size = struct.calcsize("<iiddq")
    lines = [struct.unpack("<iiddq", data[i : i + size]) for i in range(0, len(data), size)]
    assert len(data) == size * len(configs) * 3
    assert sorted((c, r) for c, r, *_ in lines) == [(c, r) for c in range(4) for r in range(3)]
    assert all(t1 >= t0 and peak > 0 for _, _, t0, t1, peak in lines)
