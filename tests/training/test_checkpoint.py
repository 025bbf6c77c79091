"""Checkpoints: format versions, migrations with one FutureWarning, safe loading, atomic writes."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from knoblab.cli import main as cli
from knoblab.errors import CheckpointError
from knoblab.training import checkpoint as ck
from knoblab.training.checkpoint import (
    atomic_torch_save,
    load_model_from_checkpoint,
    read_checkpoint,
    save_weights,
    upgrade_checkpoint,
)
from knoblab.training.migrations import CURRENT_FORMAT, MIGRATIONS, migrate

from .old_formats import to_v0, to_v1


@pytest.fixture()
def current(toy_run):
    return torch.load(toy_run.last_checkpoint, weights_only=True)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_current_format_loads_without_warning(toy_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_model_from_checkpoint(toy_run.last_checkpoint, expected_kind="toy")
    assert _same_weights(model, toy_run.module.model)
    ckpt = torch.load(toy_run.last_checkpoint, weights_only=True)
    assert ckpt["knoblab"]["format_version"] == CURRENT_FORMAT
    assert ckpt["knoblab"]["model"]["kind"] == "toy"


@pytest.mark.parametrize("make_old", [to_v0, to_v1], ids=["v0", "v1"])
def test_old_format_loads_with_one_future_warning(tmp_path, toy_run, current, make_old):
    path = tmp_path / "old.ckpt"
    torch.save(make_old(current), path)
    with pytest.warns(FutureWarning, match="knoblab upgrade-checkpoint") as rec:
        model = load_model_from_checkpoint(path)
    assert len([w for w in rec if issubclass(w.category, FutureWarning)]) == 1
    assert _same_weights(model, toy_run.module.model)


@pytest.mark.parametrize("make_old", [to_v0, to_v1], ids=["v0", "v1"])
def test_migrations_are_idempotent(current, make_old):
    old = make_old(current)
    version = old.get("knoblab", {}).get("format_version", 0)
    once = MIGRATIONS[version](make_old(current))
    twice = MIGRATIONS[version](MIGRATIONS[version](make_old(current)))

    def desc(c):  # the knoblab block without its RNG tensors
        return {k: v for k, v in c["knoblab"].items() if k != "rng"}

    assert once.keys() == twice.keys() and desc(once) == desc(twice)
    assert once["state_dict"].keys() == twice["state_dict"].keys()
    up, v = migrate(make_old(current))
    assert v == version and up["knoblab"]["model"] == current["knoblab"]["model"]


def test_upgrade_in_place_writes_bak_and_is_idempotent(tmp_path, current):
    path = tmp_path / "old.ckpt"
    torch.save(to_v0(current), path)
    original = path.read_bytes()
    assert upgrade_checkpoint(path) == 0
    assert (tmp_path / "old.ckpt.bak").read_bytes() == original
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        up = read_checkpoint(path)
    assert up["knoblab"]["format_version"] == CURRENT_FORMAT
    assert up["optimizer_states"]  # the rest of the training state is kept
    mtime = os.stat(path).st_mtime_ns
    assert upgrade_checkpoint(path) == CURRENT_FORMAT  # already current: untouched
    assert os.stat(path).st_mtime_ns == mtime


def test_upgrade_command(tmp_path, current, capsys):
    path = tmp_path / "old.ckpt"
    torch.save(to_v1(current), path)
    assert cli(["upgrade-checkpoint", str(path)]) == 0
    assert "format 1 -> 2" in capsys.readouterr().out
    assert (tmp_path / "old.ckpt.bak").is_file()
    assert cli(["upgrade-checkpoint", str(tmp_path / "missing.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "missing.ckpt" in err and len(err.strip().splitlines()) == 1


def test_newer_format_is_a_clear_error(tmp_path, current):
    current["knoblab"]["format_version"] = CURRENT_FORMAT + 1
    torch.save(current, tmp_path / "new.ckpt")
    with pytest.raises(CheckpointError, match="newer than this knoblab supports"):
        load_model_from_checkpoint(tmp_path / "new.ckpt")


def test_not_a_knoblab_checkpoint(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="not a knoblab checkpoint"):
        load_model_from_checkpoint(tmp_path / "x.ckpt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model_from_checkpoint(tmp_path / "nope.ckpt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_never_unpickles_arbitrary_objects(tmp_path, current):
    current["payload"] = _Evil()
    torch.save(current, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_model_from_checkpoint(tmp_path / "evil.ckpt")


def test_checkpoint_of_another_model(tmp_path, current):
    with pytest.raises(CheckpointError, match="another model"):
        load_model_from_checkpoint(_save(tmp_path, current), expected_kind="reference")
    current["knoblab"]["model"]["config"]["hidden"] = 64  # same kind, other shapes
    with pytest.raises(CheckpointError, match="another model.*shape"):
        load_model_from_checkpoint(_save(tmp_path, current))


def _save(tmp_path, ckpt):
    path = tmp_path / "c.ckpt"
    torch.save(ckpt, path)
    return path


def test_safetensors_export_roundtrip(tmp_path, toy_run):
    st, js = save_weights(
        toy_run.module.model,
        "toy",
        toy_run.module.task.config,
        tmp_path / "w.safetensors",
        {"seed": 0},
    )
    assert js.is_file() and st.stat().st_size > 0
    model = load_model_from_checkpoint(st, expected_kind="toy")
    assert _same_weights(model, toy_run.module.model)
    js.unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_model_from_checkpoint(st)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"v": 1}, path)

    def boom(*a, **k):
        raise KeyboardInterrupt  # interrupted between writing and renaming

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"v": 2}, path)
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
