"""Help that teaches: ``--version``, config groups discovered from ``knoblab/conf``, and three
examples per command, each of which is run here (with tiny settings appended)."""

from __future__ import annotations

import glob
import importlib
import importlib.util
import json
import shlex
import shutil
from importlib import metadata
from pathlib import Path

import pytest
import torch

from knoblab import cli, help
from knoblab.hydra_utils import compose

CONFIGS = {  # command -> its primary config (None: no Hydra config)
    "profile": "profile",
    "deep-profile": "deep_profile",
    "analyze": "analyze",
    "estimate": None,
    "train": "train",
    "plan": "plan",
    "upgrade-checkpoint": None,
    "export-data": "export_data",
}
CONF = Path(help.__file__).parent / "conf"
# appended to every profile / deep-profile example: 2 samples, no warmup, 2 tokens
TINY = [
    "dataset.sampling.num_samples_per_epoch=2",
    "run.warmup_runs=0",
    "run.max_new_tokens=2",
    "run.progress=false",
]


def _examples(command: str) -> tuple[str, ...]:
    return importlib.import_module(cli.COMMANDS[command][0]).EXAMPLES


def _argv(example: str) -> list[str]:
    """The example as the shell would pass it: quotes, ``# comments`` and globs handled."""
    words = shlex.split(example, comments=True)
    assert words[0] == "knoblab"
    out = []
    for w in words[1:]:
        out += sorted(glob.glob(w)) if "*" in w else [w]
    return out


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, f"{argv}: {err}"
    return out


def test_commands_and_configs_match() -> None:
    assert set(CONFIGS) == set(cli.COMMANDS)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys, flag: str) -> None:
    assert cli.main([flag]) == 0
    assert capsys.readouterr().out.strip() == f"knoblab {metadata.version('knoblab')}"
    assert "--version" in (cli.main([]) == 0 and capsys.readouterr().out)


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_help_shows_three_examples_and_the_config_groups(capsys, command: str) -> None:
    out = _run(capsys, [command, "--help"])
    examples = _examples(command)
    assert len(examples) == 3 and all(e.startswith(f"knoblab {command} ") for e in examples)
    assert "Examples:" in out and all(e in out for e in examples)
    name = CONFIGS[command]
    if name is None:
        assert "Config groups: none" in out
        return
    groups = help.config_groups(name)
    defaults = [d for d in (compose(name).get("defaults") or [])]  # composed: no defaults key
    assert not defaults
    for g in groups:  # every group of the YAML's defaults list, every option file on disk
        assert f"\n  {g.override}=\n" in out
        on_disk = sorted(p.stem for p in (CONF / g.group).glob("*.yaml"))
        assert [o for o, _ in g.options] == on_disk and on_disk
        for option in on_disk:
            assert f"\n    {option} " in out
        default_line = next(ln for ln in out.splitlines() if ln.startswith(f"    {g.default} "))
        assert "*" in default_line
    if not groups:
        assert "Config groups: none" in out


def test_profile_help_names_the_groups_the_issue_asks_for(capsys) -> None:
    out = _run(capsys, ["profile", "--help"])
    for g in (
        "model",
        "design",
        "knobs",
        "dataset",
        "dataset/sampling@dataset.sampling",
        "hardware",
    ):
        assert f"\n  {g}=\n" in out
    assert "reference_tokens" in out and "hf_smolvlm" in out and "stratified" in out


def test_groups_are_read_from_the_conf_folder_not_listed_in_code(tmp_path, monkeypatch) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "design" / "mine.yaml").write_text("# My own design for this test.\nname: full\n")
    monkeypatch.setattr(help, "_conf", lambda: conf)
    text = help.render_groups("profile")
    assert "    mine" in text and "My own design for this test." in text


def test_estimate_help_explains_every_argument(capsys) -> None:
    from knoblab.commands import estimate

    out = _run(capsys, ["estimate", "--help"])
    # the reference model's knobs and the token inputs; a user adapter's knobs are named
    # generically ("any knob of the fitted sweep")
    for key in ("tier", "top_k", "num_active_blocks", *estimate.TOKEN_KEYS):
        assert f"\n  {key}=" in out
    assert "Any knob of the fitted sweep" in out
    for flag in estimate.FLAGS:
        assert f"\n  {flag}" in out


@pytest.mark.slow
def test_every_example_runs(tmp_path, monkeypatch, capsys) -> None:
    """Each command's examples, run from a fresh folder, in the order a user would."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for cmd in ("plan", "export-data"):
        for ex in _examples(cmd):
            _run(capsys, _argv(ex))
    assert len(json.loads(Path("exports/hard/manifest.jsonl").read_text().splitlines()[0])) > 0
    assert Path("exports/shapes-vqa-hard/manifest.jsonl").is_file()  # the -m sweep's second job
    for i, ex in enumerate(_examples("profile")):
        _run(capsys, [*_argv(ex), *TINY, f"run.output_dir=p{i}"])
    assert list(Path("p2/tensorboard/shapes-vqa-hard").glob("events.out.tfevents.*"))
    for ex in _examples("deep-profile"):
        _run(capsys, [*_argv(ex), *TINY])
    assert list(Path("results/deep_profile/shapes-vqa").glob("trace_config_*.json.gz"))
    assert list(Path("results/deep_boundary/shapes-vqa").glob("trace_config_*.json"))
    # analyze and estimate read the default sweep's results
    _run(capsys, ["profile", *TINY])
    for ex in _examples("analyze"):
        _run(capsys, _argv(ex))
    assert Path("reports/all/report.html").is_file()
    for ex in _examples("estimate"):
        out = _run(capsys, _argv(ex))
        assert "T_total" in out
    # train: each example with fewer samples per epoch; the second resumes the first
    smaller = ["train.samples_per_epoch=8", "train.val_datasets.val.size=2"]
    for ex in _examples("train"):
        argv = _argv(ex)
        _run(capsys, [*argv, *smaller] if "train=smoke" in argv else argv)
    ckpt = torch.load("runs/toy/checkpoints/last.ckpt", weights_only=True)
    _old_format_checkpoints(ckpt)
    for ex in _examples("upgrade-checkpoint"):
        out = _run(capsys, _argv(ex))
        assert "format 1 -> " in out or "unchanged" in out
    assert Path("runs/a/checkpoints/last.ckpt.bak").is_file()


def _old_format_checkpoints(current: dict) -> None:
    """Format-1 copies of ``current`` where the upgrade-checkpoint examples look."""
    spec = importlib.util.spec_from_file_location(
        "old_formats", Path(__file__).parents[1] / "training" / "old_formats.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for run in ("train", "a", "b"):
        path = Path("runs") / run / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(mod.to_v1(current), path)
