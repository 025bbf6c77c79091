"""``model.kind=pkg.module:build_adapter``: an adapter of one's own from the plain CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from knoblab import cli
from knoblab.errors import ConfigError
from knoblab.models.registry import build_adapter

ADAPTER = """
from knoblab.models.adapter import Generation, KnobSpec, Prepared

class Echo:  # answers the number of words of the question; one "layer" knob
    name, device, dtype = "echo", "cpu", "float32"
    def __init__(self, cfg):
        self.cfg, self.layers = cfg, 1
    def knobs(self):
        return {"num_active_blocks": KnobSpec("num_active_blocks", (1, 2), 1)}
    def apply_knobs(self, settings):
        self.layers = settings.get("num_active_blocks", self.layers)
        return {"num_active_blocks": self.layers, "num_total_blocks": 2}
    def preprocess(self, sample):
        n = len(sample.question.split())
        return Prepared(inputs=n, input_text_tokens=n, actual_vision_tokens=4,
                        theoretical_vision_tokens=4, target_vision_tokens=4)
    def encode_vision(self, prepared):
        return prepared.inputs
    def prefill(self, prepared, vision):
        return [vision % 10]
    def decode(self, state, max_new_tokens):
        return Generation(token_ids=state, text=str(state[0]))

def build_adapter(cfg):
    return Echo(cfg)

def not_an_adapter(cfg):
    return 42
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"my_adapter_{tmp_path.name}"  # a fresh module name per test
    (tmp_path / f"{name}.py").write_text(ADAPTER)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_import_path_builds_the_users_adapter(module: str) -> None:
    a = build_adapter({"kind": f"{module}:build_adapter", "name": "x"}, {"device": "cpu"})
    assert type(a).__name__ == "Echo" and a.cfg["device"] == "cpu" and a.cfg["name"] == "x"


def test_profile_cli_runs_the_users_adapter(module: str, tmp_path: Path, capsys) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        code = cli.main(
            [
                "profile",
                f"model.kind={module}:build_adapter",
                "knobs.tier=null",
                "knobs.top_k=null",
                "knobs.num_active_blocks=[1,2]",
                "design=full",
                "dataset.size=20",
                "dataset.sampling.num_samples_per_epoch=2",
                "run.warmup_runs=0",
                "run.progress=false",
                f"run.output_dir={tmp_path / 'out'}",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().err
    records = sorted((tmp_path / "out" / "shapes-vqa").glob("*blocks*.json"))
    assert len(records) == 2
    assert json.loads(records[0].read_text())["status"] == "ok"


@pytest.mark.parametrize(
    ("suffix", "needle"),
    [
        (":nope", "has no nope"),
        (":not_an_adapter", "it returned a int"),
        ("_missing:build_adapter", "cannot import"),
    ],
)
def test_bad_import_paths_are_one_line(module: str, suffix: str, needle: str, capsys) -> None:
    kind = module + suffix
    with pytest.raises(ConfigError, match=rf"model\.kind='{kind}' is invalid: .*{needle}"):
        build_adapter({"kind": kind})
    assert cli.main(["profile", f"model.kind={kind}", "run.progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_unknown_kind_names_both_forms() -> None:
    with pytest.raises(ConfigError, match="one of reference, hf, or an import path"):
        build_adapter({"kind": "mine"})
