"""Hardware presets: every shipped preset validates; settings applied; bad keys named."""

from pathlib import Path

import pytest
import torch
import yaml

from knoblab.errors import ConfigError
from knoblab.profiling.hardware import apply_hardware

PRESETS = sorted((Path(__file__).resolve().parents[2] / "src/knoblab/conf/hardware").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_shipped_presets_validate(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PYTORCH_CUDA_ALLOC_CONF", "unchanged"
    )  # never touch this process's allocator
    threads = torch.get_num_threads()
    try:
        hw = apply_hardware(yaml.safe_load(path.read_text()))
    finally:
        torch.set_num_threads(threads)
    assert hw.device in ("cpu", "cuda")
    assert (path.stem == "a100") == hw.memory_savings.empty_cache_between_configs


def test_threads_applied_and_bad_keys_named() -> None:
    threads = torch.get_num_threads()
    try:
        apply_hardware({"num_threads": 1})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ConfigError, match="hardware.num_threads=0"):
        apply_hardware({"num_threads": 0})
    with pytest.raises(
        ConfigError, match="did you mean hardware.memory_savings.expandable_segments"
    ):
        apply_hardware({"memory_savings": {"expandable_segment": True}})
