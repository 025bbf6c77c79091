"""Every shipped config composes AND passes the validation of the command that reads it.

torchtune's rule: a config that ships is a config that is tested. Composing alone proves
little (Hydra composes a config full of typos), so each group option is pushed through
the same checks its command runs: the typed schema (``to_dataclass``, which rejects
unknown keys and bad values), the design generator, the sampling resolver, the dataset
and model builders. Options that need files the user supplies (a dataset manifest, a
Hugging Face checkpoint) must fail with the one-line error naming the key to set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from knoblab.config import plain, to_dataclass
from knoblab.errors import ConfigError
from knoblab.hydra_utils import compose

CONF = Path(__file__).resolve().parents[1] / "src" / "knoblab" / "conf"
PRIMARIES = sorted(p.stem for p in CONF.glob("*.yaml"))
#: the knob vocabulary every adapter speaks (knoblab.models.adapter.KnobSpec names)
KNOB_NAMES = {
    "tier",
    "vision_tokens",
    "top_k",
    "num_active_blocks",
    "batch_size",
}  # batch_size: the runner's


def _defaults(primary: str) -> list[tuple[str, str | None]]:
    """(group, package) pairs named in a primary config's defaults list."""
    doc = yaml.safe_load((CONF / f"{primary}.yaml").read_text()) or {}
    out = []
    for entry in doc.get("defaults", []):
        if isinstance(entry, dict):
            for key in entry:
                group, _, package = key.removeprefix("override ").partition("@")
                out.append((group, package or None))
    return out


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _profile(*overrides: str) -> Any:
    return compose("profile", list(overrides))


# -- every primary: composes, resolves, has the sections its defaults name ----------------


@pytest.mark.parametrize("primary", PRIMARIES)
def test_primary_config_composes_and_resolves(primary: str) -> None:
    cfg = compose(primary, [])
    data = OmegaConf.to_container(cfg, resolve=True)  # an interpolation error raises here
    assert isinstance(data, dict) and data, f"{primary}.yaml composed to nothing"
    for group, package in _defaults(primary):
        if (CONF / group).is_dir() and package != "_global_":
            where = (package or group).split("/")[0].split(".")[0]
            assert data.get(where), f"{primary}: section {where!r} (from {group}) is empty"


def test_every_group_of_every_primary_is_covered_below() -> None:
    """A new config group must get a validation test here (else it ships untested)."""
    groups = {g for p in PRIMARIES for g, _ in _defaults(p) if (CONF / g).is_dir()}
    assert groups == {
        "dataset",
        "dataset/sampling",
        "model",
        "hardware",
        "knobs",
        "design",
        "train",
    }


# -- group by group, through the command's own validation ----------------------------------


@pytest.mark.parametrize("option", _options("design"))
def test_design_options_generate_configurations(option: str) -> None:
    from knoblab.profiling.design import DesignConfig, make_design

    cfg = _profile(f"design={option}")
    design = to_dataclass(cfg.design, DesignConfig, "design")
    assert design.name == option
    lists = {k: v for k, v in plain(cfg.knobs).items() if v is not None}
    configs = make_design(
        design.name, lists, levels=design.levels, num_points=design.num_points, seed=design.seed
    )
    assert configs, f"design={option} produced no configuration"
    for c in configs:
        assert set(c) == set(lists) and all(c[k] in lists[k] for k in c)


@pytest.fixture(scope="module")
def reference_knobs() -> dict[str, Any]:
    from knoblab.models.registry import build_adapter

    cfg = _profile()
    return build_adapter(cfg.model, cfg.hardware).knobs()


@pytest.mark.parametrize("option", _options("knobs"))
def test_knob_options_name_real_knobs(option: str, reference_knobs: dict[str, Any]) -> None:
    from knoblab.models.adapter import check_knob

    knobs = plain(_profile(f"knobs={option}").knobs)
    assert set(knobs) <= KNOB_NAMES, f"knobs={option}: unknown knob {set(knobs) - KNOB_NAMES}"
    given = {k: v for k, v in knobs.items() if v is not None}
    assert given, f"knobs={option} lists no knob"
    if option.startswith("reference"):
        for name, values in given.items():
            if name == "batch_size":  # a runner knob (profiling.prepare.RUNNER_KNOBS)
                continue
            for value in values:
                check_knob(reference_knobs, name, value, "reference")


@pytest.mark.parametrize("option", _options("model"))
def test_model_options_build_or_name_the_missing_checkpoint(option: str, tmp_path: Path) -> None:
    from knoblab.models.adapter import ModelAdapter
    from knoblab.models.registry import build_adapter

    cfg = _profile(f"model={option}")
    if cfg.model.kind != "hf":
        assert isinstance(build_adapter(cfg.model, cfg.hardware), ModelAdapter)
        return
    from knoblab.models.hf import FAMILIES, HFConfig

    with pytest.raises(ConfigError) as err:  # no checkpoint ships: the error names the key
        build_adapter(cfg.model, cfg.hardware)
    assert err.value.key == "model.path" and "\n" not in str(err.value)
    # every other key fits the schema once the user gives a checkpoint folder
    keys = {k: v for k, v in plain(cfg.model).items() if k != "kind"} | {"path": str(tmp_path)}
    family = to_dataclass(keys, HFConfig, "model").family
    # model=hf reads the family from the checkpoint's config.json ("auto")
    assert family in FAMILIES or (option == "hf" and family == "auto")


@pytest.mark.parametrize("option", _options("hardware"))
def test_hardware_options_fit_the_schema(option: str) -> None:
    from knoblab.profiling.hardware import HardwareConfig

    hw = to_dataclass(_profile(f"hardware={option}").hardware, HardwareConfig, "hardware")
    assert hw.device.split(":")[0] in ("cpu", "cuda")
    assert hw.num_threads is None or hw.num_threads >= 1


@pytest.mark.parametrize("option", _options("dataset"))
def test_dataset_options_build_or_name_the_missing_file(option: str) -> None:
    from knoblab.data.registry import build_dataset

    cfg = _profile(f"dataset={option}")
    if cfg.dataset.get("format", "shapes") == "shapes":
        ds = build_dataset(cfg.dataset)
        assert len(ds) > 0 and ds[0].question and ds[0].answers
        return
    with pytest.raises(ConfigError) as err:  # the user supplies the files: named, one line
        build_dataset(cfg.dataset)
    assert err.value.key.startswith("dataset.") and "\n" not in str(err.value)


@pytest.mark.parametrize("option", _options("dataset/sampling"))
def test_sampling_options_resolve_to_a_plan(option: str) -> None:
    from knoblab.sampling import resolve_sampling

    cfg = _profile(f"dataset/sampling@dataset.sampling={option}")
    plan = resolve_sampling(cfg.dataset, dataset_size=1000)
    assert len(plan) >= 1 and plan.num_epochs >= 1
    assert all(0 <= i < 1000 for i in plan.epoch_indices(0))


@pytest.mark.parametrize("option", _options("train"))
def test_train_presets_fit_the_schema(option: str) -> None:
    from knoblab.training.chunk_rules import ChunkConfig
    from knoblab.training.runner import TrainConfig
    from knoblab.training.tasks import TASKS

    cfg = compose("train", [f"train={option}"])
    tc = to_dataclass(cfg.train, TrainConfig, "train")
    to_dataclass(
        {"train_chunk_size": tc.train_chunk_size, "val_chunk_size": tc.val_chunk_size},
        ChunkConfig,
        "train",
    )
    assert cfg.model.kind in TASKS
    assert tc.datasets, f"train={option} trains on no dataset"
    assert tc.batch_size >= 1


# -- every shipped option, through its command's --validate dry run ----------------------------

#: What a dry run of a shipped option may say instead of "ok": the user must supply files,
#: and a GPU preset (a100, h100) on a machine without CUDA names its device.
USER_SUPPLIED = ("dataset.", "model.path") + (
    () if __import__("torch").cuda.is_available() else ("hardware.device", "model.device")
)


def _validate_cases() -> list[tuple[str, str | None, str | None]]:
    from knoblab.commands.validate import VALIDATORS

    cases: list[tuple[str, str | None, str | None]] = []
    for primary in PRIMARIES:
        if primary not in VALIDATORS:
            continue
        cases.append((primary, None, None))
        for group, package in _defaults(primary):
            if not (CONF / group).is_dir():
                continue
            for option in _options(group):
                key = f"{group}@{package}" if package else group
                cases.append((primary, key, option))
    return cases


def test_every_command_with_a_hydra_config_has_a_dry_run() -> None:
    """analyze reads flags (--out, --budget-ms), not its YAML's groups; every other has one."""
    from knoblab.commands.validate import VALIDATORS

    assert set(PRIMARIES) - set(VALIDATORS) == {"analyze"}


@pytest.mark.parametrize(("primary", "group", "option"), _validate_cases())
def test_shipped_option_passes_its_commands_dry_run(
    primary: str, group: str | None, option: str | None
) -> None:
    from knoblab.commands.validate import validate

    overrides = [] if group is None else [f"{group}={option}"]
    try:
        typed = validate(primary, compose(primary, overrides))
    except ConfigError as err:  # only a file the user supplies may be missing, named in one line
        assert err.key.startswith(USER_SUPPLIED), f"{primary} {overrides}: {err}"
        assert "\n" not in str(err)
        return
    import dataclasses

    assert dataclasses.is_dataclass(typed)
    section = (group or "").split("@")[-1].split("/")[0].split(".")[0]
    if section:  # the option's section is typed (or a builder-checked mapping) and not empty
        assert getattr(typed, section)
    if section == "design":
        assert typed.design.name == option


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["profile", "run.num_runs_per_sample=0"], "run.num_runs_per_sample=0"),
        (["plan", "preview.max_indices=-1"], "preview.max_indices=-1"),
        (["train", "train.curriculum=[{epoch: -1}]"], "train.curriculum[0].epoch=-1"),
        (["export-data", "num_samples=0"], "num_samples=0"),
        (["deep-profile", "deep.mode=fast"], "deep.mode='fast'"),
        (["profile", "design=full", "knobs.top_k=[]"], "knobs.top_k=[]"),
    ],
)
def test_validate_flag_prints_ok_or_the_one_line_error(argv, needle, capsys) -> None:
    from knoblab.cli import main

    assert main([argv[0], "--validate"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "ok"
    assert main([*argv, "--validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
