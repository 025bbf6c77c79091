"""A tampered estimator.json: one line naming the file and the field, never a traceback.

The estimator is fitted by the real ``knoblab analyze`` on a real reference-model sweep;
each variant then edits one field of the file it wrote, as a hostile user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knoblab.cli import main

SWEEP = [
    "design=full",
    "knobs.tier=[low,medium]",
    "knobs.top_k=[1,2]",
    "knobs.num_active_blocks=[4]",
    "dataset.size=12",
    "dataset.sampling.num_samples_per_epoch=3",
    "run.warmup_runs=0",
    "run.progress=false",
]

#: (name, edit of the parsed estimator.json, text the one-line error must hold)
VARIANTS = [
    ("a list", lambda d: [d], "is not a knoblab estimator"),
    ("coef a string", lambda d: {**d, "coef": "x"}, "field coef"),
    (
        "coef of strings",
        lambda d: {**d, "coef": {k: ["a"] * len(v) for k, v in d["coef"].items()}},
        "field coef",
    ),
    ("coef missing", lambda d: {k: v for k, v in d.items() if k != "coef"}, "field coef"),
    ("band a number", lambda d: {**d, "band": 5}, "field band"),
    ("band of one value", lambda d: {**d, "band": {k: [1.0] for k in d["coef"]}}, "field band"),
    ("tail_factor text", lambda d: {**d, "tail_factor": {"T_total": "high"}}, "field tail_factor"),
    ("space a string", lambda d: {**d, "space": "x"}, "field space"),
    ("space of wrong keys", lambda d: {**d, "space": {"bogus": 1}}, "is damaged"),
    ("format_version 99", lambda d: {**d, "format_version": 99}, "format_version=99"),
    ("terms cut", lambda d: {**d, "features": {}}, "other terms than it lists"),
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("est")
    assert main(["profile", f"run.output_dir={root}", *SWEEP]) == 0
    results = next(p for p in root.iterdir() if p.is_dir())
    assert main(["analyze", str(results)]) == 0
    path = results / "analysis" / "estimator.json"
    assert path.is_file()
    return path


def test_the_untouched_estimator_predicts(fitted, capsys):
    capsys.readouterr()
    assert main(["estimate", "tier=low", "top_k=2", f"--estimator={fitted}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["value"]["T_total"] > 0 and out["extrapolated"] == []


@pytest.mark.parametrize("name,edit,needle", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_tampered_estimator_is_one_line(fitted, tmp_path, capsys, name, edit, needle):
    bad = tmp_path / "estimator.json"
    bad.write_text(json.dumps(edit(json.loads(fitted.read_text()))))
    capsys.readouterr()
    code = main(["estimate", "tier=low", "top_k=2", f"--estimator={bad}"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0] and str(bad) in lines[0], lines[0]
