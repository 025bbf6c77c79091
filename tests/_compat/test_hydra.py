"""Fails loudly when a Hydra (or OmegaConf) release changes what ``knoblab._compat.hydra`` uses.

The error-text parsers are fed the messages the installed Hydra really raises (composed
against knoblab's own configs), not copies of today's wording.
"""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from knoblab._compat.hydra import (
    group_option_missing,
    main_in_module,
    override_key_and_value,
    struct_miss_key,
    sweep_first_point,
    swept_keys,
    unknown_override_key,
)


def _compose_error(overrides: list[str]) -> BaseException:
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="knoblab.conf", version_base=None):
        with pytest.raises((HydraException, OmegaConfBaseException)) as info:
            compose(config_name="plan", overrides=overrides)
    return info.value


def test_override_parser_reads_keys_values_and_sweeps():
    assert override_key_and_value("model.knob_values={top_k: [1, 2]}") == (
        "model.knob_values",
        {"top_k": [1, 2]},
    )
    assert sweep_first_point("dataset.size=5,7") == "dataset.size=5"
    assert sweep_first_point("dataset.size=range(3,6)") == "dataset.size=3"
    assert sweep_first_point("dataset.size=5") is None
    assert swept_keys(["a=1,2", "b=3", "c=choice(x,y)"]) == {"a", "c"}
    with pytest.raises(HydraException):
        override_key_and_value("a=[1,")


def test_unknown_key_is_read_from_hydras_message():
    exc = _compose_error(["dataset.no_such_key=3"])
    assert unknown_override_key(str(exc)) == "dataset.no_such_key"
    assert struct_miss_key(exc) == "dataset.no_such_key"
    assert unknown_override_key("something else entirely") is None
    assert struct_miss_key(ValueError("Key 'x' is not in struct")) is None  # not OmegaConf's


def test_missing_group_option_and_the_options_are_read_from_hydras_message():
    exc = _compose_error(["dataset/sampling=no_such_option"])
    group_opt, options = group_option_missing(str(exc))
    assert group_opt == "dataset/sampling/no_such_option"
    assert options is not None and "random" in options
    assert group_option_missing("Could not override 'x'") is None


def test_main_in_module_finds_config_path_inside_that_package(tmp_path, monkeypatch):
    """hydra.main resolves config_path="conf" next to the task's module (knoblab's conf)."""
    seen = []

    def task(cfg):
        seen.append(int(cfg.dataset.sampling.num_epochs))

    app = main_in_module(task, "knoblab.hydra_utils", "conf", "plan")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        ["prog", "--multirun", "dataset.sampling.num_epochs=2,3", f"hydra.sweep.dir={tmp_path}"],
    )
    app()
    assert seen == [2, 3]
