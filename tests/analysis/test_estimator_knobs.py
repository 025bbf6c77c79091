"""E3 on records written by the real runner: any set of knobs, extrapolation flags, band coverage.

Three sweeps go through ``knoblab.profiling`` exactly as ``knoblab profile`` runs them:
the reference model (tier x top_k x blocks, low and medium tiers, 2 output tokens), a
dense user adapter whose only knob is ``vision_tokens``, and a user adapter with one knob
of its own name (numeric ``resolution`` or categorical ``quality``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import nnls

from knoblab.analysis.analyze import analyze
from knoblab.analysis.estimator import (
    LatencyEstimator,
    band_coverage,
    fit_and_evaluate,
    fit_coefficients,
    fit_estimator,
    leave_configurations_out,
)
from knoblab.analysis.features import FeatureSpace
from knoblab.analysis.load import load_results
from knoblab.cli import main
from knoblab.data.sample import Sample
from knoblab.errors import ConfigError, UnknownKeyError
from knoblab.models.adapter import Generation, KnobSpec, Prepared, check_knob
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset

pytestmark = pytest.mark.filterwarnings("ignore:reference weights not found")


class KnobAdapter:
    """A dense model with one knob: fixed CPU work (matrix products) per stage.

    ``vision_tokens`` (a dense VLM's token budget), ``resolution`` (numeric, a user's
    own name) or ``quality`` (categorical): each sets the vision tokens ``V``; prefill
    works over ``V + text`` tokens, decode over each generated token.
    """

    name = "knob-adapter"
    device = "cpu"
    dtype = "float32"
    LEVELS = {
        "vision_tokens": (8, 16, 32, 48),
        "resolution": (1, 2, 3, 4),
        "quality": ("draft", "fine", "best"),
    }

    def __init__(self, knob: str) -> None:
        self.knob = knob
        self.value: Any = self.LEVELS[knob][0]
        self.w = np.random.default_rng(0).standard_normal((48, 48))

    def knobs(self) -> dict[str, KnobSpec]:
        vals = self.LEVELS[self.knob]
        return {self.knob: KnobSpec(self.knob, vals, vals[0], "vision tokens per image")}

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        for k, v in settings.items():
            check_knob(self.knobs(), k, v, self.name)
        self.value = settings.get(self.knob, self.value)
        return {}

    def _tokens(self) -> int:
        if self.knob == "quality":
            return {"draft": 8, "fine": 24, "best": 40}[self.value]
        return int(self.value) * (8 if self.knob == "resolution" else 1)

    def _work(self, n: int) -> None:
        x = np.ones((max(n, 1), 48))
        for _ in range(3):
            x = np.tanh(x @ self.w)

    def preprocess(self, sample: Sample) -> Prepared:
        v = self._tokens() + sample.sample_id % 3
        text = 4 + sample.sample_id % 5
        return Prepared(sample, text, v, v, target_vision_tokens=self._tokens())

    def encode_vision(self, p: Prepared) -> Any:
        self._work(p.actual_vision_tokens)
        return p

    def prefill(self, p: Prepared, vision: Any) -> Any:
        self._work(p.actual_vision_tokens + p.input_text_tokens)
        return p

    def decode(self, state: Prepared, max_new_tokens: int) -> Generation:
        n = min(1 + state.inputs.sample_id % 3, max_new_tokens)
        for _ in range(n - 1):
            self._work(1)
        return Generation(list(range(n)), str(state.inputs.sample_id % 7))


def _adapter_sweep(root: Path, knob: str) -> Path:
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": None, "seed": 0}},
        "knobs": {knob: list(KnobAdapter.LEVELS[knob])},
        "design": {"name": "full"},
        "run": {
            "output_dir": str(root),
            "warmup_runs": 1,
            "num_runs_per_sample": 1,
            "progress": False,
        },
    }
    res = run_sweep(cfg, adapter=KnobAdapter(knob), dataset=ListDataset.synthetic(6, name="mine"))
    return Path(res.out_dir)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference model on CPU: tiers low/medium x top_k 1,2 x blocks 1,2; 5 samples, 2 tokens."""
    from knoblab.hydra_utils import compose
    from knoblab.profiling import run_sweeps

    out = tmp_path_factory.mktemp("reference")
    overrides = [
        "dataset.size=40",
        "dataset.sampling.num_samples_per_epoch=5",
        "knobs.tier=[low,medium]",
        "knobs.top_k=[1,2]",
        "knobs.num_active_blocks=[1,2]",
        "design=full",
        "run.warmup_runs=1",
        "run.max_new_tokens=2",
        "run.progress=false",
        f"run.output_dir={out}",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (result,) = run_sweeps(compose("profile", overrides))
    return Path(result.out_dir)


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _adapter_sweep(tmp_path_factory.mktemp("dense"), "vision_tokens")


# -- the fit on per-configuration blocks is the fit on the rows -------------------------------
def _row_fit(samples, space: FeatureSpace, stage: str) -> np.ndarray:
    """The weighted NNLS on every row, written out plainly (the pre-QR implementation)."""
    x = space.inputs(samples)
    X = space.design(stage, x)
    if stage == "other":
        ref = samples["T_total"].to_numpy(float)
        y = ref - samples[["T_vision_total", "T_LLM_prefill", "T_LLM_decode"]].to_numpy(float).sum(
            axis=1
        )
    else:
        y = ref = samples[stage].to_numpy(float)
    med = samples.assign(_r=ref).groupby("config")["_r"].transform("median").to_numpy(float)
    w = 1.0 / np.maximum(np.abs(med), max(float(np.median(np.abs(med))) * 0.05, 1e-9))
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1
    free = space.free(stage)
    A = np.column_stack([X / scale, -(X / scale)[:, free]]) * w[:, None]
    sol, _ = nnls(A, y * w, maxiter=50 * A.shape[1])
    beta = sol[: X.shape[1]].copy()
    beta[free] -= sol[X.shape[1] :]
    return beta / scale


def test_block_fit_equals_the_row_fit_on_runner_records(reference_dir: Path) -> None:
    res = load_results(reference_dir)
    space = FeatureSpace.from_samples(res.samples, res.knobs)
    coef = fit_coefficients(res.samples, space=space)
    held = res.samples["config"] == res.samples["config"].iloc[0]
    fold = fit_coefficients(res.samples[~held], space=space)
    for stage in ("T_vision_total", "T_LLM_prefill", "T_LLM_decode", "other"):
        for c, rows in ((coef, res.samples), (fold, res.samples[~held])):
            # compare fitted values (unique, unlike the coefficients of collinear terms)
            X = space.design(stage, space.inputs(rows))
            want = X @ _row_fit(rows, space, stage)
            assert X @ np.asarray(c[stage]) == pytest.approx(want, rel=1e-6, abs=1e-9)


# -- any set of knobs -------------------------------------------------------------------------
def test_reference_sweep_terms_and_required_knobs(reference_dir: Path) -> None:
    est = fit_estimator(load_results(reference_dir))
    f = est.feature_names()
    assert "B*k*N" in f["T_LLM_prefill"] and "D*B*k" in f["T_LLM_decode"]
    assert est.knob_names() == ["top_k", "num_active_blocks"]
    with pytest.raises(ConfigError, match="top_k=None is invalid: allowed is a value"):
        est.predict(tier="low", num_active_blocks=1)
    with pytest.raises(UnknownKeyError, match="did you mean top_k"):
        est.predict(tier="low", topk=1, num_active_blocks=1)


def test_dense_sweep_with_only_vision_tokens_varying(dense_dir: Path, capsys) -> None:
    res = load_results(dense_dir)
    assert res.knobs == ["vision_tokens"] and len(res.configs) == 4
    est, ev = fit_and_evaluate(res)
    f = est.feature_names()
    # no top_k and no blocks in this model: the prefill is 1, N, N^2 (no k, no B terms)
    assert f["T_LLM_prefill"] == ["1", "N", "N^2"]
    assert not any("k" in n or "B" in n for terms in f.values() for n in terms)
    assert ev.method == "leave-one-configuration-out" and len(ev.per_config) == 4
    p = est.predict(vision_tokens=24)
    assert 0 < p.value["T_total"] < np.inf and not p.extrapolated
    # target-token mode: V is the target count itself, inside the sweep's 8..48
    tgt = fit_estimator(res, vision_tokens="target", evaluate=False)
    assert tgt.predict(vision_tokens=24).inputs["vision_tokens"] == 24.0
    assert tgt.predict(vision_tokens=96).extrapolated[0].startswith("vision_tokens=96 (96 target")
    assert est.allowed_keys() == ["vision_tokens", "input_text_tokens", "output_tokens"]
    code = main(["estimate", "vision_tokens=16", "top_k=2", "--results", str(dense_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert (
        "unknown key top_k='2': allowed keys are input_text_tokens, output_tokens, vision_tokens"
        in err
    )


@pytest.mark.parametrize(
    ("knob", "inside", "outside"), [("resolution", 3, 6), ("quality", "fine", None)]
)
def test_a_single_user_knob(tmp_path: Path, knob: str, inside: Any, outside: Any, capsys) -> None:
    d = _adapter_sweep(tmp_path, knob)
    capsys.readouterr()  # the sweep's own table
    res = load_results(d)
    assert res.knobs == [knob]
    est, ev = fit_and_evaluate(res)
    names = est.feature_names()
    term = knob if knob == "resolution" else f"{knob}=fine"
    assert term in names["other"] and any(term in n for n in names["T_LLM_prefill"])
    assert len(ev.per_config) == len(KnobAdapter.LEVELS[knob])
    p = est.predict(**{knob: inside})
    assert p.value["T_total"] > 0 and not p.extrapolated
    # the knob sets the vision tokens: a measured value takes that configuration's mean tokens
    row = res.configs[res.configs[knob].astype(str) == str(inside)].iloc[0]
    assert p.inputs["vision_tokens"] == pytest.approx(row["actual_vision_tokens_mean"])
    with pytest.raises(ConfigError, match=f"{knob}=None"):
        est.predict()
    if outside is not None:
        flags = est.predict(**{knob: outside}).extrapolated
        assert any(f.startswith(f"{knob}={outside} outside the sweep's 1..4") for f in flags)
        assert any("vision tokens) outside" in f for f in flags)  # 6 x 8 tokens > 35 seen
    else:
        with pytest.raises(ConfigError, match="quality='ultra'.*best, draft, fine"):
            est.predict(quality="ultra")
    code = main(["estimate", f"{knob}={inside}", "--results", str(d), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["value"]["T_total"] == pytest.approx(p.value["T_total"])


# -- extrapolation on every input -------------------------------------------------------------
def test_extrapolation_is_flagged_on_every_input(reference_dir: Path, capsys) -> None:
    res = load_results(reference_dir)
    assert res.samples["actual_vision_tokens"].max() <= 81  # low and medium tiers only
    assert res.samples["output_tokens"].max() <= 2
    est = fit_estimator(res, evaluate=False)
    base = {"top_k": 2, "num_active_blocks": 1}
    assert est.predict(tier="medium", **base).extrapolated == []
    cases = {
        "vision_tokens": dict(vision_tokens=118),
        "output_tokens": dict(tier="low", output_tokens=50),
        "input_text_tokens": dict(tier="low", input_text_tokens=500),
        "top_k": dict(tier="low", top_k=4, num_active_blocks=1),
        "num_active_blocks": dict(tier="low", top_k=1, num_active_blocks=4),
    }
    for name, kw in cases.items():
        flags = est.predict(**(base | kw)).extrapolated
        assert len(flags) == 1 and flags[0].startswith(f"{name}="), (name, flags)
    code = main(
        [
            "estimate",
            "vision_tokens=118",
            "top_k=2",
            "num_active_blocks=1",
            "--results",
            str(reference_dir),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["extrapolated"] and "vision_tokens=118" in out["extrapolated"][0]
    code = main(
        [
            "estimate",
            "tier=low",
            "top_k=2",
            "num_active_blocks=1",
            "output_tokens=50",
            "--results",
            str(reference_dir),
            "--json",
        ]
    )
    assert (
        code == 0 and "output_tokens=50" in json.loads(capsys.readouterr().out)["extrapolated"][0]
    )


def test_a_knob_held_constant_is_optional_and_flagged_when_changed(tmp_path: Path) -> None:
    # the reference sweep with a single top_k: top_k is known, optional, flagged when changed
    from knoblab.hydra_utils import compose
    from knoblab.profiling import run_sweeps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (r,) = run_sweeps(
            compose(
                "profile",
                [
                    "dataset.size=20",
                    "dataset.sampling.num_samples_per_epoch=3",
                    "knobs.tier=[low,medium,high]",
                    "knobs.top_k=[2]",
                    "knobs.num_active_blocks=[2]",
                    "design=full",
                    "run.warmup_runs=1",
                    "run.progress=false",
                    f"run.output_dir={tmp_path}",
                ],
            )
        )
    est = fit_estimator(load_results(r.out_dir), evaluate=False)
    assert "B*k*N" in est.feature_names()["T_LLM_prefill"]  # kept as a constant factor
    assert est.predict(tier="high").extrapolated == []
    flags = est.predict(tier="high", top_k=4).extrapolated
    assert flags == [
        "top_k=4: the sweep measured only top_k=2 (its effect is scaled by the cost model)"
    ]


# -- the band's coverage on held-out configurations -------------------------------------------
def test_band_coverage_by_hand() -> None:
    import pandas as pd

    # errors (pred/meas - 1): +0.1, -0.1, 0, +0.5 (an outlier): with 3 others, the 5-95th band
    # of the others is their near-range; the outlier and the two extremes fall outside
    meas = np.array([1.0, 1.0, 1.0, 1.0])
    pred = np.array([1.1, 0.9, 1.0, 1.5])
    pc = pd.DataFrame(
        {t: meas for t in ("T_vision_total", "T_LLM_prefill", "T_LLM_decode", "T_total")}
    )
    for t in ("T_vision_total", "T_LLM_prefill", "T_LLM_decode", "T_total"):
        pc[f"pred_{t}"] = pred
    cov = band_coverage(pc).set_index("target").loc["T_total"]
    # own error inside [min(p5(others), 0), max(p95(others), 0)]:
    # +0.1 vs others (-0.1, 0, 0.5): p95 = 0.45 -> inside; -0.1 vs (0.1, 0, 0.5): p5 = 0.01 -> 0 -> outside
    # 0 vs (0.1, -0.1, 0.5): inside; 0.5 vs (0.1, -0.1, 0): p95 = 0.09 -> outside
    assert cov["coverage"] == 50.0 and cov["n"] == 4 and cov["nominal"] == 90.0


def test_coverage_is_in_analysis_json(reference_dir: Path, tmp_path: Path) -> None:
    a = analyze(reference_dir, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    cov = {r["target"]: r for r in data["estimator_evaluation"]["coverage"]}
    assert set(cov) == {"T_vision_total", "T_LLM_prefill", "T_LLM_decode", "T_total"}
    assert cov["T_total"]["n"] == len(a.results.configs) == 8
    ev = leave_configurations_out(a.results.samples, knobs=a.results.knobs)
    want = band_coverage(ev.per_config).set_index("target").loc["T_total", "coverage"]
    assert cov["T_total"]["coverage"] == pytest.approx(want)
    assert 0.0 <= cov["T_total"]["coverage"] <= 100.0
    assert "jackknife" in data["estimator_evaluation"]["coverage_method"]


def test_estimator_json_roundtrip_and_v1_migration(reference_dir: Path, tmp_path: Path) -> None:
    est = fit_estimator(load_results(reference_dir))
    back = LatencyEstimator.load(est.save(tmp_path / "estimator.json"))
    a = est.predict(tier="low", top_k=2, num_active_blocks=2, output_tokens=50)
    b = back.predict(tier="low", top_k=2, num_active_blocks=2, output_tokens=50)
    assert a.value == pytest.approx(b.value) and a.extrapolated == b.extrapolated
    # a version-1 file (fixed terms of the full model) still loads and predicts
    v1 = {
        "format": "knoblab-latency-estimator",
        "format_version": 1,
        "coef": {
            "T_vision_total": [0.5, 0.01, 0.0],
            "T_LLM_prefill": [0.3, 0.0, 0.02, 0.0004, 0.0, 0.00005],
            "T_LLM_decode": [0.0, 0.1, 0.01, 0.004, 0.0, 0.0],
            "other": [0.2, 0.0, 0.0, 0.0],
        },
        "vision_tokens": "actual",
        "tier_tokens": {"low": {"target": 32.0, "actual": 30.0}},
        "knob_values": {"tier": ["low"], "top_k": [2, 4], "num_active_blocks": [4, 8]},
        "defaults": {"input_text_tokens": 10.0, "output_tokens": 3.0},
        "features": {
            "T_vision_total": ["1", "V", "V^2"],
            "T_LLM_prefill": ["1", "N", "B", "B*N", "B*N^2", "B*k*N"],
            "T_LLM_decode": ["1", "D", "D*B", "D*B*k", "D*B*(N+D/2)", "D*N"],
            "other": ["1", "V", "N", "O"],
        },
    }
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    old = LatencyEstimator.load(tmp_path / "v1.json")
    p = old.predict(tier="low", top_k=8, num_active_blocks=4, input_text_tokens=10, output_tokens=3)
    want = (
        0.5
        + 0.01 * 30
        + 0.3
        + 4 * (0.02 + 0.0004 * 40 + 0.00005 * 8 * 40)
        + 2 * (0.1 + 4 * (0.01 + 0.004 * 8))
        + 0.2
    )
    assert p.value["T_total"] == pytest.approx(want)
    assert p.extrapolated == ["top_k=8 outside the sweep's 2..4"]


def test_records_without_vision_tokens_fit(dense_dir: Path) -> None:
    # a text-only model's records carry no vision-token counts: they count as 0
    res = load_results(dense_dir)
    res.samples = res.samples.drop(columns=["target_vision_tokens", "actual_vision_tokens"])
    res.configs = res.configs.drop(
        columns=["target_vision_tokens_mean", "actual_vision_tokens_mean"]
    )
    est, ev = fit_and_evaluate(res)
    assert est.feature_names()["T_vision_total"] == ["1"]  # V is 0 everywhere: the V terms go
    assert np.isfinite(ev.metrics["MAPE"]).all()
    assert est.predict(vision_tokens=16).value["T_total"] > 0


class _CappedAdapter(KnobAdapter):
    """A processor that caps the actual vision tokens at 20 whatever the target (as the
    tiny Qwen2.5-VL checkpoint's pixel budget does: target 64 gives 14-18 tokens)."""

    def preprocess(self, sample: Sample) -> Prepared:
        v = min(self._tokens() + sample.sample_id % 3, 20)
        return Prepared(sample, 4 + sample.sample_id % 5, v, v, target_vision_tokens=self._tokens())


def test_a_measured_target_reads_its_own_actual_tokens(tmp_path: Path) -> None:
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": None, "seed": 0}},
        "knobs": {"vision_tokens": [8, 16, 48]},
        "design": {"name": "full"},
        "run": {"output_dir": str(tmp_path), "warmup_runs": 0, "progress": False},
    }
    out = run_sweep(
        cfg, adapter=_CappedAdapter("vision_tokens"), dataset=ListDataset.synthetic(6, name="mine")
    ).out_dir
    res = load_results(out)
    est = fit_estimator(res, evaluate=False)
    c = res.configs.set_index("vision_tokens")
    for target in (8, 16, 48):  # measured: its own mean actual tokens, never a flag
        p = est.predict(vision_tokens=target)
        assert p.inputs["vision_tokens"] == pytest.approx(
            c.loc[target, "actual_vision_tokens_mean"]
        )
        assert p.extrapolated == []
    # between two measured targets: linear in the measured means, still inside the sweep
    mid = est.predict(vision_tokens=32)
    lo, hi = c.loc[16, "actual_vision_tokens_mean"], c.loc[48, "actual_vision_tokens_mean"]
    assert mid.inputs["vision_tokens"] == pytest.approx(lo + (hi - lo) * (32 - 16) / 32)
    assert mid.extrapolated == []
    # beyond the largest target: the sweep's actual/target ratio, flagged
    assert est.predict(vision_tokens=96).extrapolated[0].startswith("vision_tokens=96")


def test_own_knob_interleaved_with_early_stopping_into_analyze(tmp_path: Path) -> None:
    """A user's knob (``quality``), interleaved, accuracy early stopping: analyze reads it all."""
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": 30, "seed": 0}},
        "knobs": {"quality": list(KnobAdapter.LEVELS["quality"])},
        "design": {"name": "full"},
        "run": {
            "output_dir": str(tmp_path / "sweep"),
            "warmup_runs": 1,
            "progress": False,
            "precision": {"rel_half_width": None, "accuracy_half_width": 0.2, "min": 5},
        },
    }
    res = run_sweep(
        cfg, adapter=KnobAdapter("quality"), dataset=ListDataset.synthetic(40, name="mine")
    )
    counts = {r["knobs"]["quality"]: r["num_samples"] for r in res.records.values()}
    assert len(counts) == 3 and all(r["precision"] for r in res.records.values())
    assert min(counts.values()) < 30  # at least one configuration stopped early
    env = json.loads((res.out_dir / "environment.json").read_text())
    assert env["schedule"]["mode"] == "interleaved" and "detected" in env["drift"]
    a = analyze(res.out_dir, tmp_path / "analysis")
    assert len(load_results(res.out_dir).configs) == 3
    assert (tmp_path / "analysis" / "analysis.json").exists() and a is not None
