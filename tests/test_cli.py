"""The knoblab dispatcher: usage, unknown commands, one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from knoblab import cli
from knoblab.errors import ConfigError


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profil"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'profil'" in err and "did you mean 'profile'" in err


def test_knoblab_error_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Boom:
        @staticmethod
        def main(argv: list[str]) -> int:
            raise ConfigError("dataset.sampling.num_epochs", 0, "an integer >= 1")

    monkeypatch.setitem(sys.modules, "knoblab.commands._boom", Boom)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("knoblab.commands._boom", "test"))
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "knoblab boom: error: dataset.sampling.num_epochs=0 is invalid: allowed is an integer >= 1"
    )
    with pytest.raises(ConfigError):
        cli.main(["boom", "--debug"])


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "knoblab.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: knoblab" in out.stdout


def test_sweep_job_error_is_one_line_exit_2(tmp_path, monkeypatch) -> None:
    """A bad value inside a Hydra -m sweep: the CLI's one line and exit 2, no traceback."""
    monkeypatch.chdir(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "knoblab.cli", "plan", "-m", "dataset.sampling.num_epochs=0,1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert (
        "knoblab plan: error: dataset.sampling.num_epochs=0 is invalid: allowed is an integer >= 1"
        in out.stderr.splitlines()
    )
