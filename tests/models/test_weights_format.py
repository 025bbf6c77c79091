"""One weights format (knoblab.models.weights_format) for the reference model and training exports."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from knoblab.errors import CheckpointError
from knoblab.models.weights_format import (
    FORMAT_VERSION,
    read_weights,
    sidecar_path,
    write_weights,
)


def test_round_trip_keeps_kind_config_extra_and_tensors(tmp_path):
    st, side = write_weights(
        tmp_path / "w.safetensors", {"a": torch.arange(3.0)}, "toy", {"n": 3}, {"seed": 7}
    )
    assert side == sidecar_path(st) == tmp_path / "w.json"
    f = read_weights(st)
    assert (f.kind, f.config, f.description["seed"]) == ("toy", {"n": 3}, 7)
    assert f.state["a"].tolist() == [0.0, 1.0, 2.0]
    assert json.loads(side.read_text())["format_version"] == FORMAT_VERSION


def test_the_reference_model_and_a_training_export_write_the_same_layout(tmp_path):
    from knoblab.models.reference.weights import load_reference, random_reference, save_reference
    from knoblab.training.checkpoint import save_weights

    model = random_reference(seed=1)
    a = save_reference(model, tmp_path / "ref.safetensors")
    b, _ = save_weights(
        model, "reference", {"arch": model.cfg.to_dict()}, tmp_path / "t.safetensors"
    )
    fa, fb = read_weights(a), read_weights(b)
    assert (
        (fa.kind, fa.config) == (fb.kind, fb.config) == ("reference", {"arch": model.cfg.to_dict()})
    )
    assert fa.state.keys() == fb.state.keys()
    again = load_reference(b)  # a training export loads as model.weights
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_the_first_reference_layout_is_still_read(tmp_path):
    """A bare architecture JSON (+ the old metadata, or none) is kind reference, config {arch}."""
    from knoblab.models.reference.weights import load_reference, random_reference
    from knoblab.training.checkpoint import read_weights as training_read

    model = random_reference(seed=2)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "old.safetensors"
    save_file(state, str(path), metadata={"format": "knoblab-reference", "version": "1"})
    sidecar_path(path).write_text(json.dumps(model.cfg.to_dict()))
    kind, config, _ = training_read(path)
    assert (kind, config) == ("reference", {"arch": model.cfg.to_dict()})
    assert torch.equal(load_reference(path).lm.embed.weight, model.lm.embed.weight)


@pytest.mark.parametrize(
    ("sidecar", "match"),
    [
        (None, "has no sidecar w.json"),
        ("not json", "cannot be read"),
        ([1, 2], "allowed is a JSON object"),
        (
            {"format_version": 99, "model": {"kind": "toy"}},
            r"format_version=99 is invalid: allowed is 2\.\.2",
        ),
        ({"format_version": 2, "model": "toy"}, "model='toy' is invalid"),
        ({"no": "version"}, r"format_version=None is invalid"),
    ],
)
def test_bad_sidecars_are_one_line_errors(tmp_path, sidecar, match):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(1)}, str(path))
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        sidecar_path(path).write_text(text)
    with pytest.raises(CheckpointError, match=match):
        read_weights(path)


def test_bad_weights_paths_name_the_key(tmp_path):
    with pytest.raises(CheckpointError, match=r"^model.weights='.*' is a directory"):
        read_weights(tmp_path, key="model.weights")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_weights(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="is not a readable .safetensors file"):
        read_weights(junk)
    with pytest.raises(CheckpointError, match="ending in .safetensors"):
        write_weights(tmp_path / "w.bin", {}, "toy", {})


def test_format_version_is_the_checkpoint_blocks_version():
    from knoblab.training.migrations import CURRENT_FORMAT

    assert FORMAT_VERSION == CURRENT_FORMAT
