"""``knoblab plan``: the preview table, presets and overrides, legacy keys, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from knoblab import cli
from knoblab.commands import plan as plan_cmd
from knoblab.errors import ConfigError
from knoblab.hydra_utils import compose, normalize_overrides
from knoblab.sampling import SamplingConfig, SamplingPlan

CONF = Path(plan_cmd.__file__).resolve().parents[1] / "conf" / "dataset" / "sampling"


def run_plan(capsys: pytest.CaptureFixture[str], *overrides: str) -> tuple[int, str, str]:
    rc = cli.main(["plan", *overrides])
    out, err = capsys.readouterr()
    return rc, out, err


def test_preview_shows_settings_seed_counts_and_first_indices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, _ = run_plan(
        capsys,
        "dataset.size=5000",
        "dataset.sampling.num_samples_per_epoch=100",
        "dataset.sampling.num_epochs=3",
        "dataset.sampling.seed=17",
    )
    assert rc == 0
    assert "5,000" in out and "17 (from dataset.sampling.seed)" in out
    assert "300" in out  # total
    expected = SamplingPlan(SamplingConfig(100, 3, seed=17), 5000)
    for e in range(3):
        head = ", ".join(map(str, expected.epoch_indices(e)[:10].tolist()))
        assert head in out
    assert "legacy mapping" in out and "none" in out


@pytest.mark.parametrize("spelling", ["dataset/sampling@dataset.sampling", "dataset/sampling"])
def test_random_preset_and_seed_replay(capsys: pytest.CaptureFixture[str], spelling: str) -> None:
    rc, out, _ = run_plan(capsys, f"{spelling}=random", "dataset.size=50", "preview.max_indices=5")
    assert rc == 0 and "randomize" in out and "true" in out and "drawn; replay with" in out
    seed = int(out.split("dataset.sampling.seed=")[1].split(")")[0])
    replay = SamplingPlan(SamplingConfig(randomize=True, seed=seed), 50)
    assert ", ".join(map(str, replay.epoch_indices(0)[:5].tolist())) in out


def test_epochs_beyond_the_cap_are_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_plan(capsys, "dataset.sampling.num_epochs=9", "preview.max_epochs=2")
    assert rc == 0 and "2..8" in out and "7 more epochs not shown" in out


def test_short_epochs_show_only_their_own_indices(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_plan(
        capsys, "dataset.size=3", "dataset.sampling.num_epochs=2", "dataset.sampling.seed=1"
    )
    epochs_table = out.split("Epochs", 1)[1]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in epochs_table.splitlines()]
    rows = [r for r in rows if r and r[0].isdigit()]
    assert rc == 0 and rows == [["0", "3", "0, 1, 2"], ["1", "3", "0, 1, 2"]]


def test_legacy_repeats_shows_the_mapping(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_plan(capsys, "repeats=2500")
    assert rc == 0
    flat = " ".join(out.split())
    assert "last epoch: 500" in flat and "2,500" in flat and "repeats=2500 is deprecated" in flat


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (
            "dataset.sampling.num_epochs=0",
            "dataset.sampling.num_epochs=0 is invalid: allowed is an integer >= 1",
        ),
        (
            "dataset.sampling.num_samples_per_epoch=0",
            "dataset.sampling.num_samples_per_epoch=0 is invalid",
        ),
        ("dataset.sampling.num_epochs=1.5", "dataset.sampling.num_epochs=1.5 is invalid"),
        ("dataset.sampling.num_epochs=abc", "dataset.sampling.num_epochs='abc' is invalid"),
        ("dataset.sampling.randomize=maybe", "dataset.sampling.randomize='maybe' is invalid"),
        ("dataset.sampling.num_epoch=2", "did you mean dataset.sampling.num_epochs?"),
        ("dataset.size=0", "dataset.size=0 is invalid"),
        ("repeats=0", "repeats=0 is invalid"),
        ("dataset/sampling@dataset.sampling=rand", "one of: default, fixed, full, random"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], override: str, needle: str
) -> None:
    rc, out, err = run_plan(capsys, override)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_debug_shows_the_exception() -> None:
    with pytest.raises(ConfigError):
        cli.main(["plan", "dataset.sampling.num_epochs=0", "--debug"])


def test_subprocess_exit_code_and_no_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [sys.executable, "-m", "knoblab.cli", "plan", "dataset.sampling.num_epochs=0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "knoblab plan: error: dataset.sampling.num_epochs=0 is invalid: allowed is an integer >= 1"
    ]


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_every_sampling_preset_builds_a_plan(preset: str) -> None:
    plan = plan_cmd.plan_from_config(
        compose("plan", [f"dataset/sampling@dataset.sampling={preset}"])
    )
    assert len(plan) >= 1 and plan.describe()["legacy"] is None


def test_normalize_overrides_only_rewrites_the_groups_own_package() -> None:
    assert normalize_overrides(
        [
            "dataset/sampling@dataset.sampling=random",
            "dataset/sampling@train.sampling=random",
            "+dataset/sampling@dataset.sampling=random",
            "dataset.sampling.num_epochs=2",
        ]
    ) == [
        "dataset/sampling=random",
        "dataset/sampling@train.sampling=random",
        "+dataset/sampling@dataset.sampling=random",
        "dataset.sampling.num_epochs=2",
    ]
