"""Fault suite, config and checkpoint files (issue 16): keys added with ``+``, Hydra's own
``--config-dir/--config-name/--cfg`` flags, and files that are not what they claim to be.

Every bad input is one line (no traceback) naming the key or file; nothing is written.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import yaml

from knoblab.cli import main as cli
from knoblab.errors import CheckpointError
from knoblab.hydra_utils import compose


def _one_line(capsys) -> str:
    """The one error line on stderr (Lightning's ``INFO:`` status lines aside)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("INFO:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("command", "override", "needles"),
    [
        ("train", "+foo=1", ["unknown key foo='1'", "model, seed, train"]),
        ("train", "+experiment=x", ["unknown key experiment='x'"]),
        ("train", "++foo=1", ["unknown key foo='1'"]),
        ("train", "+train.optm.lr=1", ["unknown key train.optm", "did you mean train.optim?"]),
        ("train", "+seed.x=1", ["seed.x='1' is invalid", "seed is a value"]),
        ("plan", "+dataset.sizee=3", ["dataset.sizee='3'", "did you mean dataset.size?"]),
        ("profile", "+run.output_dirr=x", ["did you mean run.output_dir?"]),
        ("plan", "+nosuchgroup/x=y", ["nosuchgroup/x='y' is invalid", "config group"]),
    ],
)
def test_unknown_keys_added_with_plus_are_refused(capsys, tmp_path, command, override, needles):
    os.chdir(tmp_path)  # nothing may be written anywhere
    assert cli([command, override]) == 2
    err = _one_line(capsys)
    for needle in needles:
        assert needle in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override",
    [
        "+train.trainer.gradient_clip_algorithm=value",  # a Trainer argument
        "+train.checkpoint.save_top_k=2",  # a ModelCheckpoint argument
        "+train.early_stopping.patience=2",
        "+train.datasets.extra={format: shapes, size: 10}",  # a new dataset by name
        "+model.config.aux_loss_coef=0.1",
        "train.trainer.check_val_every_n_epoch=2",  # an open section, without the +
    ],
)
def test_documented_extension_points_accept_new_keys(override):
    cfg = compose("train", ["train=smoke", override])
    key, _, value = override.lstrip("+").partition("=")
    assert cfg is not None and str(key.split(".")[-1]) in str(cfg)


def test_a_typo_inside_an_extension_point_is_still_one_line(capsys, tmp_path):
    assert cli(["train", "train=smoke", f"train.output_dir={tmp_path}", "+train.optim.lrr=1"]) == 2
    assert "train.optim.lrr" in _one_line(capsys)


def _user_configs(tmp_path):
    d = tmp_path / "my_configs"
    d.mkdir()
    (d / "lr_sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "defaults": ["train", {"override train": "smoke"}, "_self_"],
                "train": {"optim": {"lr": 0.05}, "output_dir": str(tmp_path / "runs")},
            }
        )
    )
    (d / "small_profile.yaml").write_text(
        yaml.safe_dump({"defaults": ["profile", "_self_"], "dataset": {"size": 12}})
    )
    (d / "my_deep.yaml").write_text(
        yaml.safe_dump({"defaults": ["deep_profile", "_self_"], "deep": {"mode": "full"}})
    )
    return d


def test_config_dir_and_name_compose_a_users_yaml(tmp_path, capsys):
    d = _user_configs(tmp_path)
    assert cli(["train", "-cd", str(d), "-cn", "lr_sweep", "--cfg", "job"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["train"]["optim"]["lr"] == 0.05  # the user's file
    assert cfg["train"]["batch_size"] == 4  # the smoke preset it selects
    assert cfg["model"]["kind"] == "reference"  # knoblab's train.yaml underneath

    # long spellings, --flag=value, and overrides on top of the user's file
    args = [f"--config-dir={d}", "--config-name=small_profile", "dataset.seed=5", "--cfg=job"]
    assert cli(["profile", *args]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["dataset"]["size"] == 12 and cfg["dataset"]["seed"] == 5
    assert "run" in cfg and "knobs" in cfg
    assert (
        cli(["deep-profile", "-cd", str(d), "-cn", "my_deep", "deep.samples=all", "--cfg", "job"])
        == 0
    )
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["deep"]["mode"] == "full" and cfg["deep"]["samples"] == "all"
    assert not (tmp_path / "runs").exists()  # --cfg job runs nothing


def test_config_dir_runs_a_sweep_from_the_users_yaml(tmp_path, capsys):
    """``knoblab train -cd DIR -cn NAME -m key=a,b`` runs every point from the user's file."""
    d = _user_configs(tmp_path)
    os.chdir(tmp_path)
    over = ["train.trainer.max_epochs=1", "train.logger=none", "train.samples_per_epoch=16"]
    rc = cli(["train", "-cd", str(d), "-cn", "lr_sweep", "-m", "seed=1,2", *over])
    assert rc == 0, capsys.readouterr().err[-2000:]
    out = capsys.readouterr().out
    assert out.count("knoblab train: done") == 2
    assert (tmp_path / "runs" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-cd", "/no/such/dir", "-cn", "x"], "--config-dir='/no/such/dir'"),
        (["--cfg", "hydra"], "--cfg='hydra' is invalid: allowed is job"),
        (["-cn"], "-cn=None is invalid"),
        (["--config-name", "nosuch"], "nosuch"),
    ],
)
def test_bad_hydra_flags_are_one_line(capsys, args, needle):
    assert cli(["train", *args]) == 2
    assert needle in _one_line(capsys)


# --- files that are not checkpoints -------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _files(tmp_path):
    files = {
        "random.ckpt": os.urandom(4096),
        "text.ckpt": b"epoch: 3\nthis is a note, not a checkpoint\n",
        "empty.ckpt": b"",
        "evil.ckpt": pickle.dumps(_Evil(), protocol=2),
    }
    good = {"state_dict": {}, "knoblab": "a string, not a mapping"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save(good, tmp_path / "string_block.ckpt")
    torch.save({"knoblab": {"format_version": 2, "model": "x"}}, tmp_path / "string_model.ckpt")
    (tmp_path / "adir.ckpt").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("random.ckpt", "is not a checkpoint or is corrupt"),
        ("text.ckpt", "is not a checkpoint or is corrupt"),
        ("empty.ckpt", "is not a checkpoint or is corrupt"),
        ("evil.ckpt", "refusing to unpickle"),
        ("string_block.ckpt", "knoblab='a string, not a mapping' is invalid"),
        ("string_model.ckpt", "knoblab.model='x' is invalid"),
        ("adir.ckpt", "is a directory"),
    ],
)
def test_upgrade_checkpoint_on_files_that_are_not_checkpoints(tmp_path, capsys, name, needle):
    d = _files(tmp_path)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert cli(["upgrade-checkpoint", str(d / name)]) == 2
    err = _one_line(capsys)
    assert needle in err and name in err, err
    if name == "random.ckpt":
        assert "refusing" not in err  # random bytes are no attack
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before  # no .bak


@pytest.mark.parametrize("name", ["random.ckpt", "string_block.ckpt", "adir.ckpt"])
def test_resume_and_init_from_a_bad_file_is_one_line(tmp_path, capsys, name):
    d = _files(tmp_path)
    for key in ("train.resume", "train.init_weights"):
        over = ["train=smoke", f"train.output_dir={tmp_path / 'out'}", f"{key}={d / name}"]
        assert cli(["train", *over]) == 2
        err = _one_line(capsys)
        assert name in err, err


def test_model_weights_not_safetensors_or_of_another_shape(tmp_path):
    from safetensors.torch import save_file

    from knoblab.models.reference.config import ReferenceConfig
    from knoblab.models.reference.weights import load_reference, random_reference

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="is not a readable .safetensors file"):
        load_reference(junk)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"a": torch.zeros(1)}, ckpt)
    with pytest.raises(CheckpointError, match="is not a readable .safetensors file"):
        load_reference(ckpt)
    with pytest.raises(CheckpointError, match="is a directory"):
        load_reference(tmp_path)

    cfg = ReferenceConfig.from_dict(
        {"vision_dim": 32, "vision_heads": 2, "d_model": 32, "n_heads": 2, "n_layers": 2}
    )
    state = {k: v.contiguous() for k, v in random_reference(cfg).state_dict().items()}
    k = next(k for k, v in state.items() if v.ndim == 2)
    state[k] = torch.zeros(state[k].shape[0] + 1, state[k].shape[1])
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    bad.with_suffix(".json").write_text(__import__("json").dumps(cfg.to_dict()))
    with pytest.raises(CheckpointError, match=f"of another shape \\(e.g. {k}"):
        load_reference(bad)


def test_model_weights_error_through_the_cli(tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello")
    os.chdir(tmp_path)
    assert cli(["plan", "dataset.size=4"]) == 0  # the folder is usable
    capsys.readouterr()
    rc = cli(["profile", f"model.weights={junk}", "dataset.size=4", f"run.output_dir={tmp_path}/o"])
    assert rc == 2
    assert "model.weights=" in _one_line(capsys)
