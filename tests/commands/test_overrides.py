"""Hydra overrides through ``hydra_utils.compose``: dict values, open mappings, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from knoblab.config import plain
from knoblab.errors import ConfigError
from knoblab.hydra_utils import compose

MOE = ["model=hf_qwen3_vl_moe"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.knob_values={vision_tokens: [100,300]}"],
        ["model.knob_values.vision_tokens=[100,300]"],
    ],
)
def test_keys_of_an_empty_mapping_can_be_set(overrides: list[str]) -> None:
    cfg = compose("profile", [*MOE, *overrides, "model.knob_values.top_k=[1]"])
    assert plain(cfg.model.knob_values) == {"vision_tokens": [100, 300], "top_k": [1]}
    assert cfg.model.family == "qwen3_vl_moe"  # the rest of the section is kept


def test_dict_value_reaches_the_adapter(tmp_path: Path) -> None:
    from knoblab.models.hf.tiny import write_tiny_checkpoint
    from knoblab.models.registry import build_adapter

    ckpt = write_tiny_checkpoint("qwen3_vl_moe", tmp_path / "moe")
    cfg = plain(
        compose(
            "profile",
            [
                *MOE,
                f"model.path={ckpt}",
                "model.dtype=fp32",
                "model.knob_values={vision_tokens: [100,300]}",
            ],
        )
    )
    values = build_adapter(cfg["model"], cfg["hardware"]).knobs()["vision_tokens"].values
    assert {100, 300} <= set(values)


def test_a_new_key_in_a_dict_value_names_that_key() -> None:
    with pytest.raises(ConfigError) as err:
        compose("profile", ["knobs={top_kk: [1]}"])
    msg = str(err.value)
    assert msg.startswith("unknown key knobs.top_kk=[1]:") and "did you mean knobs.top_k?" in msg


def test_a_misspelled_dict_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as err:
        compose("profile", [*MOE, "model.knob_valus={vision_tokens: [1]}"])
    msg = str(err.value)
    assert "unknown key model.knob_valus=" in msg and "did you mean model.knob_values?" in msg


def test_a_new_key_in_a_non_empty_section_is_still_an_error() -> None:
    with pytest.raises(ConfigError, match=r"did you mean dataset\.sampling\.num_epochs\?"):
        compose("plan", ["dataset.sampling={num_epoch: 2}"])


def test_multirun_with_a_dict_value_composes_like_a_plain_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from knoblab import cli

    monkeypatch.chdir(tmp_path)  # Hydra writes its multirun logs under the working directory
    argv = ["profile", "-m", *MOE, "model.knob_values={vision_tokens: [100,300]}"]
    assert cli.main([*argv, f"model.path={tmp_path}/none,{tmp_path}/other"]) == 2
    err = capsys.readouterr().err.strip()
    # the job ran (and found no checkpoint): the override itself was accepted
    assert err.startswith("knoblab profile: error: model.path=") and len(err.splitlines()) == 1


def test_multirun_bad_override_is_the_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from knoblab import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["plan", "-m", "dataset.sampling={num_epoch: 2}", "dataset.size=5,6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key dataset.sampling.num_epoch=2" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "multirun").exists()  # no job started


def test_any_trainer_argument_is_a_plain_override() -> None:
    # train.trainer passes every key to lightning's Trainer (checked there, by the runner):
    # a Trainer argument the YAML does not list needs no "+".
    cfg = compose("train", ["train=toy", "train.trainer.check_val_every_n_epoch=3"])
    assert cfg.train.trainer.check_val_every_n_epoch == 3
    # other sections stay closed
    with pytest.raises(ConfigError, match="train.optim.lrr"):
        compose("train", ["train=toy", "train.optim.lrr=3"])


def test_a_misspelled_trainer_argument_is_the_runners_one_line_error(tmp_path: Path) -> None:
    from knoblab.training.runner import run_training

    cfg = compose(
        "train", ["train=toy", f"train.output_dir={tmp_path}", "train.trainer.max_epoch=3"]
    )
    with pytest.raises(
        ConfigError, match=r"train\.trainer\.max_epoch.*did you mean train\.trainer\.max_epochs"
    ):
        run_training(cfg)
    assert not any(tmp_path.iterdir())
