"""``knoblab analyze`` and ``knoblab estimate``: flags, key=value overrides, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knoblab.analysis.estimator import fit_estimator
from knoblab.analysis.load import load_results
from knoblab.cli import main
from knoblab.commands.analyze import parse_argv


def test_analyze_flags_and_keys_parse() -> None:
    flags, over = parse_argv(
        ["runs/a", "--budget-ms", "40", "--percentile=p99", "vision_tokens=target"]
    )
    assert flags == {"results_dir": "runs/a", "budget_ms": 40.0, "percentile": "p99"}
    assert over == ["vision_tokens=target"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["percentile=p90"],
            "percentile='p90' is invalid: allowed is one the records hold: p50, p95, p99",
        ),
        (["--percentile", "p100"], "percentile='p100' is invalid: allowed is p<q> with 0 < q"),
        (["percentil=p99"], "did you mean percentile?"),
        (["--bugdet-ms", "3"], "did you mean --budget-ms?"),
        (["--budget-ms", "abc"], "--budget-ms='abc'"),
        (
            ["--vision-tokens", "both"],
            "vision_tokens='both' is invalid: allowed is one of actual, target",
        ),
    ],
)
def test_analyze_errors_are_one_line(
    argv: list[str], message: str, small_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(small_dir), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_analyze_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_estimate_from_saved_estimator(
    small_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    est = fit_estimator(load_results(small_dir))
    path = est.save(tmp_path / "estimator.json")
    argv = [
        "estimate",
        "tier=high",
        "top_k=3",
        "num_active_blocks=6",
        "output_tokens=4",
        "--estimator",
        str(path),
    ]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = est.predict(tier="high", top_k=3, num_active_blocks=6, output_tokens=4)
    assert out["value"]["T_total"] == pytest.approx(want.value["T_total"])
    assert out["low"]["T_total"] <= out["value"]["T_total"] <= out["high"]["T_total"]
    assert main(argv) == 0
    assert "T_total" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["tier=ultra", "top_k=2", "num_active_blocks=4"],
            "tier='ultra' is invalid: allowed is one of the tiers in the sweep: low, high",
        ),
        (["tier=low", "topk=2", "num_active_blocks=4"], "did you mean top_k?"),
        (["tier=low", "top_k=2"], "num_active_blocks=None"),
        (["tier=low", "top_k=0", "num_active_blocks=4"], "top_k='0'"),
        (
            ["tier=low", "top_k=2", "num_active_blocks=99"],
            "num_active_blocks=99 is invalid: allowed is an integer in 1..8",
        ),
    ],
)
def test_estimate_errors_name_allowed_values(
    args: list[str], message: str, small_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["estimate", *args, "--results", str(small_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_estimate_needs_an_estimator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "tier=low", "top_k=2", "num_active_blocks=4"]) == 2
    assert "--estimator" in capsys.readouterr().err
