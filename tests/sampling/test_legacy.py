"""resolve_sampling: new keys, the legacy repeats bridge, its warnings and its precedence."""

from __future__ import annotations

import logging
import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knoblab.errors import ConfigError, DataError
from knoblab.hydra_utils import compose
from knoblab.sampling import SamplingConfig, SamplingPlan, resolve_sampling
from knoblab.sampling.legacy import legacy_mapping, sampling_given, sampling_overrides


def old_cyclic_loop(images: list[int], repeats: int) -> list[int]:
    """The Stage-1 loop that ``repeats`` drove (seed 000, "Before"), transcribed literally."""
    out = []
    images_iter = iter(images)
    for _ in range(repeats):
        try:
            img = next(images_iter)
        except StopIteration:
            images_iter = iter(images)
            img = next(images_iter)
        out.append(img)
    return out


def legacy_cfg(key: str, value: int, sampling: dict | None = None) -> dict:
    cfg: dict = {"dataset": {"sampling": sampling or {}}, "run": {"stage1_repeats": None}}
    if key == "repeats":
        cfg["repeats"] = value
    else:
        cfg["run"]["stage1_repeats"] = value
    return cfg


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["repeats", "run.stage1_repeats"]),
    n=st.integers(1, 40),
    repeats=st.integers(1, 200),
)
def test_legacy_plan_equals_the_old_cyclic_loop(key: str, n: int, repeats: int) -> None:
    with pytest.warns(FutureWarning, match=f"{key}={repeats} is deprecated"):
        plan = resolve_sampling(legacy_cfg(key, repeats), n)
    assert list(plan) == old_cyclic_loop(list(range(n)), repeats)
    assert len(plan) == repeats


@settings(deadline=None)  # a shared CI machine must not make timing flaky
@given(n=st.integers(1, 1000), repeats=st.integers(1, 10_000))
def test_mapping_rules_of_seed_000(n: int, repeats: int) -> None:
    config, cut = legacy_mapping(repeats, n)
    assert config.randomize is False
    if repeats <= n:
        assert (config.num_samples_per_epoch, config.num_epochs, cut) == (repeats, 1, None)
    else:
        assert config.num_samples_per_epoch == n
        assert config.num_epochs == math.ceil(repeats / n)
        remainder = repeats - (config.num_epochs - 1) * n
        assert cut == (None if remainder == n else remainder)


def test_warning_is_logged_and_names_new_keys_and_mapping(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="knoblab.sampling"):
        with pytest.warns(FutureWarning) as record:
            plan = resolve_sampling({"repeats": 2500}, 1000)
    (message,) = [str(w.message) for w in record]
    assert [r.getMessage() for r in caplog.records] == [message]
    for text in (
        "repeats=2500 is deprecated",
        "dataset.sampling.num_samples_per_epoch=1000",
        "dataset.sampling.num_epochs=3",
        "dataset.sampling.randomize=false",
        "last epoch cut to 500",
    ):
        assert text in message
    applied = plan.describe()["legacy"]["applied"]
    assert applied == {
        "key": "repeats",
        "value": 2500,
        "mapping": {"num_samples_per_epoch": 1000, "num_epochs": 3, "randomize": False},
        "last_epoch_samples": 500,
    }


@pytest.mark.parametrize(
    "sampling",
    [{"num_epochs": 2}, {"randomize": True}, {"num_samples_per_epoch": 3}],
)
@pytest.mark.parametrize("key", ["repeats", "run.stage1_repeats"])
def test_new_keys_win_and_the_warning_says_the_old_one_was_ignored(
    key: str, sampling: dict
) -> None:
    with pytest.warns(FutureWarning, match=f"{key}=7 is deprecated and was ignored"):
        plan = resolve_sampling(legacy_cfg(key, 7, {**sampling, "seed": 1}), 10)
    expected = SamplingPlan(SamplingConfig(**sampling, seed=1), 10)
    assert list(plan) == list(expected)
    legacy = plan.describe()["legacy"]
    assert legacy["applied"] is None and legacy["ignored"] == {key: 7}


def test_stage1_repeats_wins_over_repeats() -> None:
    cfg = {"repeats": 5, "run": {"stage1_repeats": 12}}
    with pytest.warns(FutureWarning) as record:
        plan = resolve_sampling(cfg, 10)
    messages = [str(w.message) for w in record]
    assert any("run.stage1_repeats=12 is deprecated; use dataset.sampling" in m for m in messages)
    assert any("repeats=5 is deprecated and was ignored" in m for m in messages)
    assert list(plan) == old_cyclic_loop(list(range(10)), 12)


def test_a_seed_alone_does_not_count_as_given_and_is_carried_over() -> None:
    assert not sampling_given(SamplingConfig(seed=3))
    with pytest.warns(FutureWarning, match="Mapped to"):
        plan = resolve_sampling(legacy_cfg("repeats", 4, {"seed": 3}), 10)
    assert plan.seed == 3 and list(plan) == [0, 1, 2, 3]


def test_no_legacy_key_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = resolve_sampling({"dataset": {"sampling": {"num_epochs": 2, "seed": 0}}}, 4)
    assert list(plan) == [0, 1, 2, 3] * 2 and plan.describe()["legacy"] is None
    assert list(resolve_sampling({}, 3)) == [0, 1, 2]  # no section: the default preset


def test_composed_config_from_the_cli_presets() -> None:
    cfg = compose("plan", ["repeats=7", "dataset.size=3"])
    with pytest.warns(FutureWarning):
        assert list(resolve_sampling(cfg, 3)) == [0, 1, 2, 0, 1, 2, 0]
    cfg = compose("plan", ["repeats=7", "dataset/sampling@dataset.sampling=random"])
    with pytest.warns(FutureWarning, match="was ignored"):
        plan = resolve_sampling(cfg, 3)
    assert plan.config.randomize and len(plan) == 3


@pytest.mark.parametrize("key", ["repeats", "run.stage1_repeats"])
@pytest.mark.parametrize("value", [0, -2, 1.5, "abc", True])
def test_bad_legacy_values_are_one_line(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        resolve_sampling(legacy_cfg(key, value), 10)  # type: ignore[arg-type]
    assert e.value.key == key and "\n" not in str(e.value)


def test_bad_new_keys_and_empty_dataset() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.sampling\.num_epochs=0"):
        resolve_sampling({"dataset": {"sampling": {"num_epochs": 0}}}, 10)
    with pytest.raises(ConfigError, match="did you mean dataset.sampling.num_epochs"):
        resolve_sampling({"dataset": {"sampling": {"num_epoch": 2}}}, 10)
    with pytest.raises(DataError, match="dataset_size=0"):
        resolve_sampling({"repeats": 3}, 0)


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(1, 20),
    n_per=st.one_of(st.none(), st.integers(1, 30)),
    num_epochs=st.integers(1, 3),
    randomize=st.booleans(),
    repeats=st.one_of(st.none(), st.integers(1, 70)),
)
def test_sampling_overrides_rebuild_the_same_plan(
    n: int, n_per: int | None, num_epochs: int, randomize: bool, repeats: int | None
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if repeats is None:
            plan = SamplingPlan(SamplingConfig(n_per, num_epochs, randomize), n)
        else:
            plan = resolve_sampling({"repeats": repeats}, n)
        rebuilt = resolve_sampling(compose("plan", sampling_overrides(plan)), n)
    assert rebuilt.seed == plan.seed and rebuilt.seed_source == "config"
    assert list(rebuilt) == list(plan)
