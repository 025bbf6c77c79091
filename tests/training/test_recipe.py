"""The recipe's evaluation grid and claim checks (the full recipe run is not a test: ~26 min)."""

from __future__ import annotations

import pytest

from knoblab.hydra_utils import compose
from knoblab.training.recipe import Setting, check_claims, evaluate, settings_for
from knoblab.training.tasks import build_task

TINY = {
    "arch": {
        "vision_dim": 16,
        "vision_heads": 2,
        "d_model": 16,
        "n_heads": 2,
        "n_layers": 2,
        "num_experts": 2,
        "expert_hidden": 16,
    }
}


@pytest.fixture(scope="module")
def tiny():
    return build_task("reference", TINY).model


def test_grid_covers_tiers_top_k_and_half_blocks(tiny):
    names = {s.name for s in settings_for(tiny)}
    assert {
        "tier=low top_k=2 blocks=2",
        "tier=medium top_k=2 blocks=2",
        "tier=high top_k=2 blocks=2",
    } <= names
    assert {"tier=high top_k=1 blocks=2", "tier=high top_k=2 blocks=1"} <= names


def test_claims_pass_and_fail(tiny):
    good = {
        "tier=low top_k=2 blocks=2": 60.0,
        "tier=medium top_k=2 blocks=2": 75.0,
        "tier=high top_k=2 blocks=2": 85.0,
        "tier=high top_k=1 blocks=2": 84.0,
        "tier=high top_k=2 blocks=1": 50.0,
    }
    assert all(ok for _, _, ok in check_claims(good, tiny, 300))
    bad = {**good, "tier=low top_k=2 blocks=2": 75.0, "tier=high top_k=1 blocks=2": 95.0}
    failed = [c for c, _, ok in check_claims(bad, tiny, 300) if not ok]
    assert (
        len(failed) == 2
        and any("low tier" in c for c in failed)
        and any("top_k" in c for c in failed)
    )


def test_evaluate_returns_a_percentage_per_setting(tiny):
    acc = evaluate(tiny, [Setting("low", 1, 1), Setting("high", 2, 2)], num_samples=4, batch_size=2)
    assert set(acc) == {"tier=low top_k=1 blocks=1", "tier=high top_k=2 blocks=2"}
    assert all(0.0 <= v <= 100.0 for v in acc.values())
    assert tiny.top_k == tiny.cfg.top_k and len(tiny.active_block_indices) == 2  # knobs restored


def test_reference_preset_is_the_shipped_architecture():
    cfg = compose("train", ["train=reference"])
    task = build_task(cfg.model.kind, cfg.model.config)
    from knoblab.models.reference.config import ReferenceConfig

    assert task.model.cfg == ReferenceConfig()
    assert cfg.train.export.endswith("reference-v2.safetensors")


def test_bad_override_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "knoblab.training.recipe",
            "--out",
            str(tmp_path / "r"),
            "train.optim.lrr=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "train.optim.lrr" in lines[0]
        and "did you mean train.optim.lr" in lines[0]
    )
    assert not (tmp_path / "r").exists()


def _package_hashes() -> dict[str, str]:
    import hashlib
    from pathlib import Path

    import knoblab

    root = Path(knoblab.__file__).resolve().parent
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts  # bytecode is Python's, not ours
    }


@pytest.mark.slow
def test_evaluating_the_shipped_weights_never_writes_into_the_package(tmp_path):
    """Issue 14: ``--evaluate <shipped> --samples N`` used to rewrite the package's
    reference-v2.recipe.json (claims set to false after a tiny evaluation)."""
    import json
    import subprocess
    import sys

    from knoblab.models.reference.weights import shipped_weights_path

    before = _package_hashes()
    cmd = [sys.executable, "-m", "knoblab.training.recipe", "--evaluate"]
    proc = subprocess.run(
        [*cmd, str(shipped_weights_path()), "--samples", "2", "--no-sweep"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: a claim fails on 2 samples
    assert _package_hashes() == before
    report = tmp_path / "runs" / "reference-eval" / "reference-v2.evaluation.json"
    data = json.loads(report.read_text())
    assert data["evaluation"]["samples"] == 2 and len(data["claims"]) == 4
    assert data["recipe"]["evaluation"]["samples"] != 2  # the shipped recipe, as it was

    # A folder inside the package is refused in one line, before any work.
    proc = subprocess.run(
        [*cmd, "shipped", "--samples", "1", "--eval-out", str(shipped_weights_path().parent)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "--eval-out" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _package_hashes() == before


def test_write_evaluation_goes_to_the_named_folder(tmp_path):
    import json

    from knoblab.training.recipe import write_evaluation

    weights = tmp_path / "w" / "m.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    (tmp_path / "w" / "m.recipe.json").write_text('{"seed": 3}')
    out = write_evaluation(weights, {"claims": []}, tmp_path / "named" / "sub")
    assert out == tmp_path / "named" / "sub" / "m.evaluation.json"
    assert json.loads(out.read_text()) == {
        "weights": str(weights.resolve()),
        "recipe": {"seed": 3},
        "claims": [],
    }
    assert (tmp_path / "w" / "m.recipe.json").read_text() == '{"seed": 3}'  # untouched
