"""``model=hf``: the family from config.json, wrong-family and random-weight checks, hub ids."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from knoblab.errors import CheckpointError, ConfigError
from knoblab.hub import hub_cache_dir, resolve_checkpoint
from knoblab.hydra_utils import compose
from knoblab.models.hf import build, family_of
from knoblab.models.hf.tiny import write_tiny_checkpoint
from knoblab.models.registry import build_adapter

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def smol(tmp_path_factory) -> Path:
    return write_tiny_checkpoint("smolvlm", tmp_path_factory.mktemp("ckpt") / "tiny-smol")


def test_model_hf_preset_reads_the_family_from_config_json(smol):
    cfg = compose("profile", ["model=hf", f"model.path={smol}", "model.dtype=fp32"])
    assert cfg.model.family == "auto"
    adapter = build_adapter(cfg.model)
    assert adapter.family.name == "smolvlm" and adapter.name == "tiny-smol"
    assert adapter.unmapped == {}  # a mapped family: every knob mapped


def test_checkpoint_under_another_family_is_a_one_line_error(smol):
    cfg = compose("profile", ["model=hf_qwen2_5_vl", f"model.path={smol}"])
    with pytest.raises(ConfigError) as err:
        build_adapter(cfg.model)
    msg = str(err.value)
    assert "\n" not in msg
    assert "model.family='qwen2_5_vl' is invalid" in msg
    assert "model=hf_smolvlm or model=hf" in msg and "'smolvlm' checkpoint" in msg


def _rewrite_weights(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    (weights,) = dst.glob("*.safetensors")
    tensors = load_file(weights)
    change(tensors)
    save_file(tensors, weights, metadata={"format": "pt"})
    return dst


def test_missing_or_unexpected_weights_are_an_error_naming_keys(smol, tmp_path):
    def drop(t):
        for key in sorted(k for k in t if "layers.1." in k and "text_model" in k):
            del t[key]

    missing = _rewrite_weights(smol, tmp_path / "missing", drop)
    with pytest.raises(CheckpointError, match=r"weights missing from the checkpoint .*layers\.1\."):
        build({"path": str(missing), "dtype": "fp32"})

    extra = _rewrite_weights(
        smol, tmp_path / "extra", lambda t: t.update(stray=t[next(iter(t))].clone())
    )
    with pytest.raises(CheckpointError, match=r"1 weights in the checkpoint but not .*: stray"):
        build({"path": str(extra), "dtype": "fp32"})


def _fake_hub_cache(root: Path, repo: str, ckpt: Path) -> Path:
    """A folder laid out like the hub cache: models--org--name/{refs/main, snapshots/<rev>}."""
    base = root / ("models--" + repo.replace("/", "--"))
    shutil.copytree(ckpt, base / "snapshots" / REV)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(REV)
    return root


def test_hub_id_resolves_from_the_local_cache_only(smol, tmp_path, monkeypatch):
    cache = _fake_hub_cache(tmp_path / "hub", "tiny-org/tiny-smol", smol)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even "online", nothing may be fetched
    assert hub_cache_dir() == cache
    assert resolve_checkpoint("tiny-org/tiny-smol") == cache / (
        "models--tiny-org--tiny-smol/snapshots/" + REV
    )
    adapter = build({"path": "tiny-org/tiny-smol", "dtype": "fp32"})
    assert adapter.family.name == "smolvlm" and adapter.name == "tiny-smol"

    with pytest.raises(ConfigError) as err:
        build({"path": "tiny-org/not-there", "dtype": "fp32"})
    msg = str(err.value)
    assert "\n" not in msg and "nothing is downloaded" in msg
    assert str(cache / "models--tiny-org--not-there") in msg


def test_hf_home_is_the_fallback_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    with pytest.raises(
        ConfigError, match=r"model.path='\./nope' is invalid: allowed is an existing"
    ):
        resolve_checkpoint("./nope")


def test_unmapped_family_falls_back_and_names_what_it_cannot_map(tmp_path, caplog):
    ckpt = write_tiny_checkpoint("gemma3", tmp_path / "g3")
    assert family_of(ckpt).model_class == "AutoModelForImageTextToText"
    with caplog.at_level(logging.WARNING, logger="knoblab.models.hf"):
        adapter = build({"path": str(ckpt), "dtype": "fp32"})
    lines = [r.getMessage() for r in caplog.records if "generic fallback" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "'gemma3'" in lines[0] and "not mapped: vision_tokens" in lines[0]
    assert set(adapter.knobs()) == {"num_active_blocks"}
    with pytest.raises(ConfigError, match=r"knobs.vision_tokens=64 is invalid"):
        adapter.apply_knobs({"vision_tokens": 64})
    # a non-VLM model type is refused with its name
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ConfigError, match=r"model_type 'gpt2' is not one in transformers"):
        family_of(tmp_path / "gpt2")


def test_cli_generic_fallback_profiles_and_wrong_family_is_exit_2(tmp_path, capsys):
    """``knoblab profile model=hf`` on an unmapped MoE family; a wrong preset: one line, exit 2."""
    from knoblab import cli
    from knoblab.profiling import records as rec

    ckpt = write_tiny_checkpoint("glm4v_moe", tmp_path / "glm")
    common = [
        f"model.path={ckpt}",
        "model.dtype=fp32",
        "dataset.size=4",
        "dataset.sampling.num_samples_per_epoch=1",
        "knobs=hf",
        "run.warmup_runs=0",
        "run.num_runs_per_sample=1",
        "run.progress=false",
    ]
    argv = [
        "profile",
        "model=hf",
        "design=full",
        "knobs.vision_tokens=[16,64]",
        "knobs.top_k=[1,2]",
    ]
    assert cli.main([*argv, *common, f"run.output_dir={tmp_path / 'out'}"]) == 0
    records = rec.load_records(tmp_path / "out" / "shapes-vqa")
    seen = {(r["knobs"]["vision_tokens"], r["knobs"]["top_k"]) for r in records.values()}
    assert seen == {(v, k) for v in (16, 64) for k in (1, 2)}
    assert all(r["status"] == "ok" for r in records.values())
    capsys.readouterr()
    assert cli.main(["profile", "model=hf_qwen3_vl_moe", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "model.family='qwen3_vl_moe' is invalid" in err and "'glm4v_moe' checkpoint" in err


def test_chat_template_from_jinja_or_the_older_json(tmp_path):
    from knoblab.models.hf import _chat_template

    assert _chat_template(tmp_path) is None
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    assert _chat_template(tmp_path) == "{{ x }}"
    (tmp_path / "chat_template.jinja").write_text("{{ y }}")
    assert _chat_template(tmp_path) == "{{ y }}"  # the newer file wins
