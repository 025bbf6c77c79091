"""Every shipped conf/model/hf_*.yaml names a known family and validates; bad keys are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from knoblab._lazy import load_object
from knoblab.config import to_dataclass
from knoblab.errors import ConfigError
from knoblab.hydra_utils import compose
from knoblab.models.hf import FAMILIES, HFConfig, build, family_of
from knoblab.models.hf.tiny import write_tiny_checkpoint

CONF = Path(__file__).resolve().parents[3] / "src" / "knoblab" / "conf" / "model"
SHIPPED = sorted(CONF.glob("hf_*.yaml"))


def test_one_config_per_family():
    assert {p.stem.removeprefix("hf_") for p in SHIPPED} == set(FAMILIES)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_validates(path, tmp_path):
    data = yaml.safe_load(path.read_text())
    assert data["kind"] == "hf"
    cfg = to_dataclass(
        {k: v for k, v in data.items() if k != "kind"} | {"path": str(tmp_path)}, HFConfig, "model"
    )
    model_type = load_object(FAMILIES[data["family"]]).model_types[0]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    assert family_of(tmp_path, cfg.family).name == data["family"]
    composed = compose("profile", [f"model={path.stem}", "hardware=h100"])
    assert composed.model.family == data["family"] and composed.hardware.device == "cuda"


def test_bad_model_keys_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"model.path='' is invalid"):
        build({"kind": "hf"})
    with pytest.raises(
        ConfigError,
        match=r"model.dtype='int8' is invalid: allowed is one of float32 \(fp32\), bfloat16 \(bf16\)",
    ):
        build({"path": str(tmp_path), "dtype": "int8"})
    with pytest.raises(ConfigError, match="did you mean model.max_new_tokens"):
        build({"path": str(tmp_path), "max_new_token": 3})
    with pytest.raises(ConfigError, match="a folder with a readable config.json"):
        build({"path": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"model.family='gpt2' is invalid"):
        build({"path": str(tmp_path), "family": "gpt2"})
    (tmp_path / "config.json").write_text('{"model_type": "smolvlm"}')  # no weights
    with pytest.raises(ConfigError, match=r"model.path=.* a loadable smolvlm checkpoint") as err:
        build({"path": str(tmp_path)})
    assert "\n" not in str(err.value)


def test_hardware_preset_applies_and_model_keys_win(tmp_path, checks):
    from knoblab.models.registry import build_adapter

    ckpt = write_tiny_checkpoint("smolvlm", tmp_path / "smol")
    hw = {"device": "cpu", "num_threads": 1, "tf32": False, "dtype": None, "memory_savings": {}}
    a = build_adapter(
        {
            "kind": "hf",
            "path": str(ckpt),
            "dtype": "fp32",
            "knob_values": {"num_active_blocks": [1]},
        },
        hw,
    )
    assert (a.device, a.dtype, a.name) == ("cpu", "float32", "smol")  # the canonical name
    eager = build_adapter(
        {"kind": "hf", "path": str(ckpt), "attn_implementation": "eager", "dtype": "bf16"}, hw
    )
    assert eager.model.config.get_text_config()._attn_implementation == "eager"
    assert eager.dtype == "bfloat16" and next(eager.model.parameters()).dtype == torch.bfloat16
    pytest.importorskip("accelerate")
    placed = build_adapter(
        {"kind": "hf", "path": str(ckpt), "dtype": "fp32", "device_map": "auto"}, hw
    )
    checks.greedy_and_stages(placed, {"num_active_blocks": 1})  # still == generate
    assert a.knobs()["num_active_blocks"].values == (
        1,
        2,
    )  # the checkpoint's own value stays allowed
    with pytest.raises(ConfigError, match=r"model.knob_values.num_active_blocks=3 .* 1..2"):
        build_adapter(
            {"kind": "hf", "path": str(ckpt), "knob_values": {"num_active_blocks": [1, 3]}}, hw
        )
    with pytest.raises(ConfigError, match=r"model.knob_values.top_k"):
        build_adapter({"kind": "hf", "path": str(ckpt), "knob_values": {"top_k": [1]}}, hw)
