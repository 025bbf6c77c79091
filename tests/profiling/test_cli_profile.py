"""`knoblab profile` / `knoblab deep-profile` through the CLI: runs, reruns, multirun, one-line errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from knoblab import cli
from knoblab.profiling import records as rec

KNOB_PRESETS = Path(__file__).resolve().parents[2] / "src" / "knoblab" / "conf" / "knobs"
SMALL = [
    "dataset.size=40",
    "dataset.sampling.num_samples_per_epoch=4",
    "knobs.tier=[low]",
    "knobs.top_k=[1,2]",
    "knobs.num_active_blocks=[1]",
    "design=full",
    "run.warmup_runs=1",
    "run.progress=false",
]


pytestmark = [
    pytest.mark.filterwarnings("ignore:reference weights not found"),
    pytest.mark.usefixtures("keep_torch_threads"),  # the cpu preset sets threads process-wide
]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_profile_runs_writes_and_refuses_another_sweep(tmp_path: Path, capsys) -> None:
    out = f"run.output_dir={tmp_path}"
    code, stdout, _ = _run(capsys, "profile", *SMALL, out)
    assert code == 0
    d = tmp_path / "shapes-vqa"
    records = rec.load_records(d)
    assert sorted(records) == [
        "shapes-vqa_imgsizetier-low_crops2_topk1_blocks1.json",
        "shapes-vqa_imgsizetier-low_crops2_topk2_blocks1.json",
    ]
    assert "top_k" in stdout and "p95" in stdout  # the summary table
    r = next(iter(records.values()))
    assert r["model"] == "reference-vlm" and r["environment"]["sampling"]["seed"] == 42
    assert r["environment"]["packages"]["torch"] and r["environment"]["device"] == "cpu"
    before = {
        p.name: p.read_bytes()
        for p in d.iterdir()
        if p.suffix == ".json" and p.name != "sweep.json"
    }
    code, _, err = _run(capsys, "profile", *SMALL, out, "dataset.sampling.num_samples_per_epoch=5")
    assert code == 2
    assert (
        err.count("\n") == 1
        and "holds another sweep's results (samples differ: 4 samples there, 5 now)" in err
    )
    assert "choose a new directory" in err
    assert {
        p.name: p.read_bytes()
        for p in d.iterdir()
        if p.suffix == ".json" and p.name != "sweep.json"
    } == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("knobs.topk=[1]", "did you mean knobs.top_k?"),
        (
            "+knobs.experts=[1]",
            "knobs.experts=1 is invalid: allowed is a knob of model 'reference-vlm'",
        ),
        ("knobs.top_k=[1,9]", "knobs.top_k=9 is invalid: allowed is one of [1, 2, 3, 4]"),
        ("knobs.top_k=[]", "knobs.top_k=[] is invalid"),
        (
            "design=grid",
            "design='grid' is invalid: allowed is one of: balanced, boundary, full, lhs, stratified",
        ),
        ("dataset.size=0", "dataset.size=0 is invalid"),
        (
            "knobs=reference_tokens knobs.tier=[low]",
            "is invalid: allowed is null when knobs.tier is set",
        ),
        (
            "run.num_runs_per_sample=0",
            "run.num_runs_per_sample=0 is invalid: allowed is an integer >= 1",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, override: str, message: str) -> None:
    code, _, err = _run(capsys, "profile", *SMALL, f"run.output_dir={tmp_path}", *override.split())
    assert code == 2, err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "shapes-vqa").exists()


def test_no_knob_at_all_and_empty_dataset(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = _run(
        capsys,
        "profile",
        *SMALL,
        f"run.output_dir={tmp_path}",
        "knobs.tier=null",
        "knobs.top_k=null",
        "knobs.num_active_blocks=null",
    )
    assert code == 2 and "knobs={} is invalid: allowed is at least one knob list" in err
    from knoblab.data import registry

    monkeypatch.setitem(registry.FORMATS, "synthetic", "knoblab.profiling.synthetic:build_dataset")
    code, _, err = _run(
        capsys,
        "profile",
        *SMALL[1:],
        f"run.output_dir={tmp_path}",
        "dataset.format=synthetic",
        "dataset.size=0",
        "dataset.name=empty",
    )
    assert code == 2 and "dataset.name='empty' has no samples" in err


def test_several_datasets_one_invocation_one_model_load(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from knoblab.models import registry

    builds = []
    real = registry.build_adapter
    monkeypatch.setattr(
        registry, "build_adapter", lambda *a, **k: builds.append(1) or real(*a, **k)
    )
    code, _, err = _run(
        capsys,
        "profile",
        *SMALL[1:],
        "knobs.top_k=[1]",
        f"run.output_dir={tmp_path}",
        "datasets=[shapes_vqa,shapes_vqa_hard]",
    )
    assert code == 0, err
    assert len(builds) == 1  # the model is loaded once; knobs are applied in place
    assert len(rec.load_records(tmp_path / "shapes-vqa")) == 1
    assert len(rec.load_records(tmp_path / "shapes-vqa-hard")) == 1


def test_multirun_over_knob_lists_extends_one_sweep(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # Hydra writes its multirun logs under the working directory
    code, _, err = _run(
        capsys,
        "profile",
        "-m",
        *[a for a in SMALL if not a.startswith("knobs.top_k")],
        "knobs.top_k=[1],[3]",
        f"run.output_dir={tmp_path / 'res'}",
    )
    assert code == 0, err
    records = rec.load_records(tmp_path / "res" / "shapes-vqa")
    assert sorted(r["knobs"]["top_k"] for r in records.values()) == [1, 3]
    sweep = json.loads((tmp_path / "res" / "shapes-vqa" / "sweep.json").read_text())
    assert [lists["top_k"] for lists in sweep["knob_lists"]] == [[1], [3]]


def test_deep_profile_cli_with_legacy_stage1_repeats(tmp_path: Path, capsys) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, stdout, err = _run(
            capsys,
            "deep-profile",
            f"deep.output_dir={tmp_path}",
            "deep.samples=all",
            "run.stage1_repeats=3",
            "deep.configurations=[{tier: low, top_k: 1, num_active_blocks: 1}]",
        )
    assert code == 0, err
    assert any(
        issubclass(w.category, FutureWarning) and "run.stage1_repeats=3" in str(w.message)
        for w in caught
    )
    index = json.loads((tmp_path / "shapes-vqa" / "deep_profile.json").read_text())
    assert index["profiled_sample_ids"] == [0, 1, 2] and len(index["configurations"]) == 1
    assert (tmp_path / "shapes-vqa" / "trace_config_0.json.gz").exists()
    assert (tmp_path / "shapes-vqa" / "profiler_results_config_0_all.txt").exists()
    assert "1 configuration(s) profiled" in stdout


@pytest.mark.parametrize("preset", sorted(p.stem for p in KNOB_PRESETS.glob("reference*.yaml")))
def test_shipped_knob_presets_are_valid_for_the_reference_model(preset: str) -> None:
    import yaml

    from knoblab.models.registry import build_adapter
    from knoblab.profiling.design import make_design
    from knoblab.profiling.runner import knob_lists

    lists = knob_lists(
        yaml.safe_load((KNOB_PRESETS / f"{preset}.yaml").read_text()),
        build_adapter({"kind": "reference"}),
    )
    assert 8 <= len(make_design("balanced", lists)) <= 12  # the default design's size


@pytest.mark.parametrize("command", ["profile", "deep-profile"])
def test_help_prints_the_config(capsys, command: str) -> None:
    code, out, _ = _run(capsys, command, "--help", "knobs.top_k=[1]")
    assert code == 0 and "top_k:\n  - 1" in out and "num_runs_per_sample" in out


def test_target_tokens_mode_with_the_reference_model(tmp_path: Path, capsys) -> None:
    code, _, err = _run(
        capsys,
        "profile",
        *SMALL,
        f"run.output_dir={tmp_path}",
        "knobs=reference_tokens",
        "knobs.tier=null",  # SMALL sets a tier list
        "knobs.vision_tokens=[18,144]",
        "knobs.top_k=[1]",
        "knobs.num_active_blocks=[1]",
    )
    assert code == 0, err
    records = rec.load_records(tmp_path / "shapes-vqa")
    assert sorted(records) == [
        "shapes-vqa_imgsizetokens144_topk1_blocks1.json",
        "shapes-vqa_imgsizetokens18_topk1_blocks1.json",
    ]
    r = records["shapes-vqa_imgsizetokens144_topk1_blocks1.json"]
    assert r["tier"] is None and r["vision_tokens"] == 144 and r["max_crops"] == 15
    assert r["target_vision_tokens_mean"] == 144 and r["actual_vision_tokens_mean"] <= 144
    s = r["per_sample_results"][0]
    assert s["target_crops"] == 15 and s["actual_num_crops"] <= 15
