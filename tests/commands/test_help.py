"""``-h``/``--help`` on every command: usage plus the composed config, exit 0."""

from __future__ import annotations

import pytest

from knoblab import cli

# (command, an override that shows up in the printed config, the YAML text it gives)
HYDRA_COMMANDS = [
    ("profile", "knobs.top_k=[1]", "top_k:\n  - 1"),
    ("deep-profile", "knobs.top_k=[1]", "top_k:\n  - 1"),
    ("analyze", "percentile=p99", "percentile: p99"),
    ("train", "train.optim.lr=0.125", "lr: 0.125"),
    ("plan", "dataset.sampling.seed=4242", "seed: 4242"),
    ("export-data", "num_samples=4242", "num_samples: 4242"),
]


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize(("command", "override", "shown"), HYDRA_COMMANDS)
def test_help_prints_usage_and_the_composed_config(
    capsys: pytest.CaptureFixture[str], command: str, override: str, shown: str, flag: str
) -> None:
    code = cli.main([command, flag, override])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"knoblab {command}" in out  # the usage
    assert "Config (with your overrides)" in out and shown in out
    assert "dataset" in out or command == "analyze"


def test_help_with_multirun_shows_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "-m", "--help", "dataset.sampling.seed=4242"]) == 0
    assert "seed: 4242" in capsys.readouterr().out


def test_analyze_help_applies_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["analyze", "runs/x", "--budget-ms", "40", "--help"]) == 0
    out = capsys.readouterr().out
    assert "results_dir: runs/x" in out and "budget_ms: 40.0" in out


def test_help_with_a_bad_override_is_the_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["plan", "--help", "dataset.sampling.num_epoch=2"]) == 2
    assert "did you mean dataset.sampling.num_epochs" in capsys.readouterr().err


def test_estimate_help_is_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    # estimate has no Hydra config (its key=value are knob settings): usage only
    assert cli.main(["estimate", "--help"]) == 0
    assert "knoblab estimate tier=" in capsys.readouterr().out
