"""`knoblab train` on an accelerator this machine cannot run: one line naming the key."""

from __future__ import annotations

import pytest
import torch

from knoblab import cli


@pytest.mark.parametrize(
    ("built", "available", "allowed"),
    [
        (False, False, "cpu or auto: this torch has no CUDA"),
        (True, False, "cpu or auto: no CUDA device is visible here"),
    ],
)
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_accelerator_without_cuda_is_one_line(
    tmp_path, monkeypatch, capsys, built: bool, available: bool, allowed: str, accelerator: str
) -> None:
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: built)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    argv = ["train", "train=toy", f"train.output_dir={tmp_path}", "train.logger=none"]
    assert cli.main([*argv, f"train.trainer.accelerator={accelerator}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"knoblab train: error: train.trainer.accelerator='{accelerator}' is invalid: "
        f"allowed is {allowed}"
    )


def test_other_trainer_misconfiguration_is_one_line(tmp_path, capsys) -> None:
    argv = ["train", "train=toy", f"train.output_dir={tmp_path}", "train.logger=none"]
    assert cli.main([*argv, "train.trainer.accelerator=tpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("knoblab train: error: train.trainer=") and "\n" not in err
