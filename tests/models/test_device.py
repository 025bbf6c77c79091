"""The model's device: the hardware preset decides unless the model sets one; CUDA checked up front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from knoblab import cli
from knoblab.config import plain
from knoblab.errors import ConfigError
from knoblab.hydra_utils import compose
from knoblab.models import registry
from knoblab.models.registry import build_adapter, check_device, merged_model_config


@pytest.fixture
def no_cuda_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave like a CPU-only torch wheel, also on a machine with GPUs."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The dict each kind's build would receive (nothing is built)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(registry, "load_object", lambda ref: seen.append)
    monkeypatch.setattr(registry, "check_device", lambda device, key="": str(device))
    return seen


@pytest.mark.parametrize(
    ("hardware", "device"), [(None, "cpu"), ("h100", "cuda"), ("a100", "cuda")]
)
def test_reference_model_takes_the_hardware_presets_device(
    captured: list[dict[str, Any]], hardware: str | None, device: str
) -> None:
    cfg = plain(compose("profile", [f"hardware={hardware}"] if hardware else []))
    assert cfg["model"]["kind"] == "reference" and cfg["model"]["device"] is None
    build_adapter(cfg["model"], cfg["hardware"])
    assert captured[-1]["device"] == device
    assert merged_model_config(cfg["model"], cfg["hardware"])["device"] == device


def test_a_model_device_still_wins(captured: list[dict[str, Any]]) -> None:
    cfg = plain(compose("profile", ["hardware=h100", "model.device=cpu"]))
    build_adapter(cfg["model"], cfg["hardware"])
    assert captured[-1]["device"] == "cpu"
    # a null model key leaves the preset's; a null with no preset key stays null
    merged = merged_model_config({"weights": None, "dtype": None}, {"dtype": "bfloat16"})
    assert merged == {"weights": None, "dtype": "bfloat16"}


def test_check_device_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match=r"model.device='gpu0' is invalid: allowed is cpu, cuda"):
        check_device("gpu0")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device is visible"):
        check_device("cuda", "hardware.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match=r"model.device='cuda:2' .* cuda:0..cuda:1"):
        check_device("cuda:2")


@pytest.mark.usefixtures("no_cuda_build")
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["hardware=h100"], "hardware.device"),
        (["hardware.device=cuda"], "hardware.device"),
        (["model.device=cuda:0"], "model.device"),
    ],
)
def test_reference_on_cuda_without_cuda_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], key: str
) -> None:
    small = ["dataset.size=4", "dataset.sampling.num_samples_per_epoch=1", "design=full"]
    argv = ["profile", *overrides, *small, "run.progress=false", f"run.output_dir={tmp_path}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"{key}='cuda" in err and "allowed is cpu: this torch has no CUDA" in err


@pytest.mark.usefixtures("no_cuda_build")
def test_hf_model_on_h100_without_cuda_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from knoblab.models.hf import build
    from knoblab.models.hf.tiny import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint("qwen3_vl_moe", tmp_path / "moe")
    capsys.readouterr()  # transformers' shard-writing bar
    argv = ["profile", "model=hf_qwen3_vl_moe", f"model.path={ckpt}", "hardware=h100"]
    assert cli.main([*argv, "knobs=hf", f"run.output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "knoblab profile: error: hardware.device='cuda' is invalid: "
        "allowed is cpu: this torch has no CUDA"
    )
    # the library entry point, without the registry in front, says the same
    with pytest.raises(ConfigError, match=r"model.device='cuda' .* this torch has no CUDA"):
        build({"path": str(ckpt), "device": "cuda", "dtype": "fp32"})
