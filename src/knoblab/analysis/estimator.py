"""E3 — a latency estimator: stage latencies from tokens and knobs, fitted on per-sample records.

Each stage gets a small linear model whose features follow the cost of a decoder
block, so that it interpolates and extrapolates the way the hardware does. With
``V`` vision tokens (actual by default, or target), ``T`` input text tokens,
``N = V + T`` prefill tokens, ``k`` = top_k, ``B`` = active blocks and
``D = output_tokens - 1`` decode steps (prefill emits the first token)::

    vision   ~ 1, V, V^2                          (patch encoder over crops)
    prefill  ~ 1, N, B, B*N, B*N^2, B*k*N         (per block: norms/attention proj ~ N,
                                                   attention scores ~ N^2, experts ~ k*N)
    decode   ~ 1, D, D*B, D*B*k, D*B*(N + D/2), D*N  (per step and block: weights + k experts
                                                   + attention over the KV cache)
    other    ~ 1, V, N, O                         (T_total minus the stages: pre/post-processing)
    T_total  = vision + prefill + decode + other

Why this and not a boosted tree or a neural net (nn-Meter uses random forests per
kernel): a sweep holds a handful of configurations, and a tree cannot predict outside
the knob values it saw, whereas these terms are the cost model of a transformer and
extend to unmeasured ``top_k`` or block counts. The fit is non-negative least squares
(``scipy.optimize.nnls``) on rows weighted by 1/latency (the row's configuration's
median, see ``_scale``): non-negative because every
term is a cost (it keeps extrapolation sane when terms are collinear), weighted so
that it minimises relative error, the figure nn-Meter reports. Intercepts may take
either sign.

Evaluation leaves whole configurations out (fit on the others, predict the held-out
one) and reports, as nn-Meter does, MAPE, RMSPE and the share of predictions within
±5% and ±10%, per configuration (mean latency of its samples) and per sample.

The uncertainty band of a prediction comes from those held-out errors: the 5th and
95th percentiles of (predicted / measured - 1) over held-out configurations. With
few configurations that is close to the worst held-out error, which is the honest
reading.

The estimator is saved as JSON (no pickle): coefficients, feature names, the band,
and what it needs to turn knobs into tokens — for a tier, the mean target and actual
vision tokens that the sweep's records show for that tier.

Example:
    >>> from knoblab.analysis.synthetic import write_synthetic_results
    >>> from knoblab.analysis.load import load_results
    >>> import tempfile
    >>> res = load_results(write_synthetic_results(tempfile.mkdtemp(), num_samples=8))
    >>> est = fit_estimator(res)
    >>> p = est.predict(tier="high", top_k=4, num_active_blocks=8)
    >>> p.low["T_total"] <= p.value["T_total"] <= p.high["T_total"]
    True
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from knoblab.analysis.load import STAGES, SweepResults, knob_values
from knoblab.errors import CheckpointError, ConfigError

FORMAT = "knoblab-latency-estimator"
FORMAT_VERSION = 1
TARGETS = (*STAGES, "T_total")
VISION_TOKEN_MODES = ("actual", "target")

Inputs = Mapping[str, np.ndarray]
_Feature = tuple[str, Callable[[Inputs], np.ndarray], bool]  # (name, f(inputs), free sign)


def _one(x: Inputs) -> np.ndarray:
    return np.ones_like(x["V"])


FEATURES: dict[str, list[_Feature]] = {
    "T_vision_total": [
        ("1", _one, True),
        ("V", lambda x: x["V"], False),
        ("V^2", lambda x: x["V"] ** 2, False),
    ],
    "T_LLM_prefill": [
        ("1", _one, True),
        ("N", lambda x: x["N"], False),
        ("B", lambda x: x["B"], False),
        ("B*N", lambda x: x["B"] * x["N"], False),
        ("B*N^2", lambda x: x["B"] * x["N"] ** 2, False),
        ("B*k*N", lambda x: x["B"] * x["k"] * x["N"], False),
    ],
    "T_LLM_decode": [
        ("1", _one, True),
        ("D", lambda x: x["D"], False),
        ("D*B", lambda x: x["D"] * x["B"], False),
        ("D*B*k", lambda x: x["D"] * x["B"] * x["k"], False),
        ("D*B*(N+D/2)", lambda x: x["D"] * x["B"] * (x["N"] + x["D"] / 2), False),
        ("D*N", lambda x: x["D"] * x["N"], False),
    ],
    "other": [
        ("1", _one, True),
        ("V", lambda x: x["V"], True),
        ("N", lambda x: x["N"], True),
        ("O", lambda x: x["O"], True),
    ],
}


def inputs_from(
    frame: pd.DataFrame | Mapping[str, Any], vision_tokens: str = "actual"
) -> dict[str, np.ndarray]:
    """Feature inputs V, T, N, O, D, k, B from per-sample columns."""
    col = f"{vision_tokens}_vision_tokens"

    def arr(name: str) -> np.ndarray:
        return np.atleast_1d(np.asarray(frame[name], dtype=float))

    v, t, o = arr(col), arr("input_text_tokens"), arr("output_tokens")
    return {
        "V": v,
        "T": t,
        "N": v + t,
        "O": o,
        "D": np.maximum(o - 1.0, 0.0),
        "k": arr("top_k"),
        "B": arr("num_active_blocks"),
    }


def _design(stage: str, x: Inputs) -> np.ndarray:
    return np.column_stack([f(x) for _, f, _ in FEATURES[stage]])


def _fit_stage(stage: str, x: Inputs, y: np.ndarray, weight_ref: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error; free-sign features get a negated twin."""
    X = _design(stage, x)
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale  # column scaling: conditioning, the solution is rescaled below
    floor = max(float(np.median(np.abs(weight_ref))) * 0.05, 1e-9)
    w = 1.0 / np.maximum(np.abs(weight_ref), floor)
    free = np.array([f for _, _, f in FEATURES[stage]])
    A = np.column_stack([Xs, -Xs[:, free]]) * w[:, None]
    sol, _ = nnls(A, y * w, maxiter=50 * A.shape[1])
    beta = sol[: X.shape[1]].copy()
    beta[free] -= sol[X.shape[1] :]
    return beta / scale


@dataclass
class Prediction:
    """Predicted latencies (ms) of one configuration, with a band.

    ``value``, ``low`` and ``high`` map each of T_vision_total, T_LLM_prefill, T_LLM_decode
    and T_total to milliseconds; ``inputs`` are the token counts and knobs used.
    """

    value: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    inputs: dict[str, float]
    band_source: str
    extrapolated: list[str] = field(default_factory=list)


@dataclass
class LatencyEstimator:
    """A fitted per-stage latency model; JSON-serialisable (see the module docstring)."""

    coef: dict[str, list[float]]
    vision_tokens: str = "actual"
    band: dict[str, tuple[float, float]] = field(default_factory=dict)
    band_source: str = "none"
    tail_factor: dict[str, float] = field(default_factory=dict)
    tier_tokens: dict[str, dict[str, float]] = field(default_factory=dict)
    token_ratio: float = 1.0
    defaults: dict[str, float] = field(default_factory=dict)
    knob_values: dict[str, list[Any]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # -- prediction ---------------------------------------------------------------------
    def predict_inputs(self, x: Inputs) -> dict[str, np.ndarray]:
        """Per-row predictions for every stage, ``other`` and ``T_total`` (ms)."""
        out = {s: _design(s, x) @ np.asarray(self.coef[s]) for s in (*STAGES, "other")}
        out["T_total"] = (
            out["T_vision_total"] + out["T_LLM_prefill"] + out["T_LLM_decode"] + out["other"]
        )
        return out

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for per-sample rows (columns as in ``SweepResults.samples``)."""
        pred = self.predict_inputs(inputs_from(frame, self.vision_tokens))
        return pd.DataFrame({k: v for k, v in pred.items() if k != "other"}, index=frame.index)

    def tokens_for(self, tier: str | None = None, vision_tokens: float | None = None) -> float:
        """Vision tokens the model sees for a tier (sweep mean) or a target token count."""
        if tier is not None:
            if tier not in self.tier_tokens:
                allowed = (
                    ", ".join(self.tier_tokens) or "none (this sweep set vision_tokens, not tiers)"
                )
                raise ConfigError("tier", tier, f"one of the tiers in the sweep: {allowed}")
            return float(self.tier_tokens[tier][self.vision_tokens])
        if vision_tokens is None:
            raise ConfigError("tier", None, "a tier or vision_tokens=<target tokens>")
        # NOTE: target tokens -> actual tokens by the sweep's mean actual/target ratio
        return float(vision_tokens) * (self.token_ratio if self.vision_tokens == "actual" else 1.0)

    def predict(
        self,
        *,
        top_k: int,
        num_active_blocks: int,
        tier: str | None = None,
        vision_tokens: float | None = None,
        input_text_tokens: float | None = None,
        output_tokens: float | None = None,
    ) -> Prediction:
        """Predict one configuration's mean stage latencies, with the held-out-error band.

        Tokens not given take the sweep's mean (``defaults``); a tier takes the mean
        vision tokens of that tier in the sweep.

        Raises:
            ConfigError: an unknown tier, or a knob value that is not a positive number.
        """
        for key, val in (("top_k", top_k), ("num_active_blocks", num_active_blocks)):
            if not isinstance(val, (int, float)) or isinstance(val, bool) or val < 1:
                raise ConfigError(key, val, "an integer >= 1")
        total_blocks = self.meta.get("num_total_blocks")
        if total_blocks and num_active_blocks > total_blocks:
            raise ConfigError(
                "num_active_blocks",
                num_active_blocks,
                f"an integer in 1..{total_blocks} (the model's blocks)",
            )
        v = self.tokens_for(tier, vision_tokens)
        t = float(
            self.defaults.get("input_text_tokens", 0.0)
            if input_text_tokens is None
            else input_text_tokens
        )
        o = float(
            self.defaults.get("output_tokens", 1.0) if output_tokens is None else output_tokens
        )
        row = {
            f"{self.vision_tokens}_vision_tokens": [v],
            "input_text_tokens": [t],
            "output_tokens": [o],
            "top_k": [top_k],
            "num_active_blocks": [num_active_blocks],
        }
        pred = self.predict_inputs(inputs_from(row, self.vision_tokens))
        value = {k: float(pred[k][0]) for k in TARGETS}
        low, high = {}, {}
        for k in TARGETS:
            lo_e, hi_e = self.band.get(k, (0.0, 0.0))
            # measured = predicted / (1 + e): the largest over-prediction gives the low end
            low[k] = value[k] / (1.0 + max(hi_e, 0.0))
            high[k] = value[k] / (1.0 + min(lo_e, 0.0)) if lo_e > -1 else math.inf
        extrap = []
        for key, val in (("top_k", top_k), ("num_active_blocks", num_active_blocks)):
            seen = self.knob_values.get(key) or []
            if seen and not (min(seen) <= val <= max(seen)):
                extrap.append(f"{key}={val} outside the sweep's {min(seen)}..{max(seen)}")
        inputs = {"vision_tokens": v, "input_text_tokens": t, "output_tokens": o, "top_k": top_k}
        inputs["num_active_blocks"] = num_active_blocks
        return Prediction(value, low, high, inputs, self.band_source, extrap)

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"], d["format_version"] = FORMAT, FORMAT_VERSION
        d["features"] = {s: [n for n, _, _ in FEATURES[s]] for s in FEATURES}
        return d

    def save(self, path: str | Path) -> Path:
        """Write the estimator as JSON (atomic: temporary file, then rename)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(_jsonable(self.to_dict()), indent=1))
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> LatencyEstimator:
        """Read an estimator written by :meth:`save`.

        Raises:
            CheckpointError: not a knoblab estimator file, or of another format version.
        """
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"estimator={str(p)!r} is not readable ({type(exc).__name__}): allowed is an "
                "estimator.json written by knoblab analyze"
            ) from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CheckpointError(
                f"estimator={str(p)!r} is not a knoblab estimator: allowed is an estimator.json written by knoblab analyze"
            )
        if d.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"estimator format_version={d.get('format_version')!r} in {p}: allowed is {FORMAT_VERSION}"
            )
        features = {s: [n for n, _, _ in FEATURES[s]] for s in FEATURES}
        if d.get("features") != features:
            raise CheckpointError(
                f"estimator={str(p)!r} has other features than this knoblab version: refit it"
            )
        names = {f.name for f in cls.__dataclass_fields__.values()}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["band"] = {k: tuple(v) for k, v in kwargs.get("band", {}).items()}
        return cls(**kwargs)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _scale(samples: pd.DataFrame, column: str) -> np.ndarray:
    """Each row's latency scale for relative weighting: its configuration's median.

    Why not the row's own value: minimising sum(((p - y) / y)^2) with noisy y favours
    predictions below the mean (small y get the large weights), which showed as a
    -30% bias on a busy machine's timings. A configuration's median is a robust scale
    that is the same for all its rows, so the fit stays unbiased for the mean.
    """
    if "config" in samples:
        return samples.groupby("config", sort=False)[column].transform("median").to_numpy(float)
    return samples[column].to_numpy(float)


def fit_coefficients(
    samples: pd.DataFrame, vision_tokens: str = "actual"
) -> dict[str, list[float]]:
    """Fit every stage's coefficients on per-sample rows."""
    if vision_tokens not in VISION_TOKEN_MODES:
        raise ConfigError("vision_tokens", vision_tokens, f"one of {', '.join(VISION_TOKEN_MODES)}")
    x = inputs_from(samples, vision_tokens)
    total = samples["T_total"].to_numpy(float)
    coef = {}
    for s in STAGES:
        y = samples[s].to_numpy(float)
        coef[s] = _fit_stage(s, x, y, _scale(samples, s)).tolist()
    other = total - samples[list(STAGES)].to_numpy(float).sum(axis=1)
    coef["other"] = _fit_stage("other", x, other, _scale(samples, "T_total")).tolist()
    return coef


def error_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """nn-Meter's figures: MAPE and RMSPE (percent), shares within ±5% and ±10% (percent)."""
    pred = np.asarray(pred, dtype=float)
    true = np.asarray(true, dtype=float)
    ok = np.abs(true) > 0
    rel = (pred[ok] - true[ok]) / true[ok]
    if rel.size == 0:
        return {
            "MAPE": math.nan,
            "RMSPE": math.nan,
            "within_5": math.nan,
            "within_10": math.nan,
            "n": 0,
        }
    return {
        "MAPE": float(np.mean(np.abs(rel)) * 100),
        "RMSPE": float(np.sqrt(np.mean(rel**2)) * 100),
        # the 1e-12 slack keeps exactly-10% errors (2.2 vs 2.0) inside despite float rounding
        "within_5": float(np.mean(np.abs(rel) <= 0.05 + 1e-12) * 100),
        "within_10": float(np.mean(np.abs(rel) <= 0.10 + 1e-12) * 100),
        "n": int(rel.size),
    }


@dataclass
class Evaluation:
    """Leave-configurations-out results.

    ``per_config``: one row per held-out configuration with measured and predicted mean
    of each target. ``per_sample``: every held-out sample's predictions beside the
    measurements. ``metrics``: rows (level: config/sample, target) with MAPE, RMSPE,
    within_5, within_10, n.
    """

    per_config: pd.DataFrame
    per_sample: pd.DataFrame
    metrics: pd.DataFrame
    method: str


def leave_configurations_out(samples: pd.DataFrame, vision_tokens: str = "actual") -> Evaluation:
    """Fit on all configurations but one, predict that one, for every configuration.

    With fewer than 3 configurations there is nothing to hold out; the evaluation is
    then in-sample and ``method`` says so.
    """
    configs = list(dict.fromkeys(samples["config"]))
    pieces = []
    if len(configs) >= 3:
        method = "leave-one-configuration-out"
        for c in configs:
            held = samples["config"] == c
            est = LatencyEstimator(fit_coefficients(samples[~held], vision_tokens), vision_tokens)
            pieces.append(est.predict_frame(samples[held]).add_prefix("pred_"))
        pred = pd.concat(pieces).loc[samples.index]
    else:
        method = "in-sample (fewer than 3 configurations)"
        est = LatencyEstimator(fit_coefficients(samples, vision_tokens), vision_tokens)
        pred = est.predict_frame(samples).add_prefix("pred_")
    per_sample = pd.concat([samples[["config", *TARGETS]], pred], axis=1)
    per_config = per_sample.groupby("config", sort=False).mean(numeric_only=True).reset_index()
    rows = []
    for level, frame in (("config", per_config), ("sample", per_sample)):
        for t in TARGETS:
            rows.append(
                {"level": level, "target": t, **error_metrics(frame[f"pred_{t}"], frame[t])}
            )
    return Evaluation(per_config, per_sample, pd.DataFrame(rows), method)


def fit_estimator(
    res: SweepResults, vision_tokens: str = "actual", evaluate: bool = True
) -> LatencyEstimator:
    """Fit on every usable sample of a sweep; with ``evaluate``, leave configurations out too.

    The estimator's ``evaluation`` then holds the held-out metrics and its band comes
    from them (without, the band is empty). :func:`fit_and_evaluate` also returns the
    evaluation tables.
    """
    return fit_and_evaluate(res, vision_tokens)[0] if evaluate else _fit_only(res, vision_tokens)


def _fit_only(res: SweepResults, vision_tokens: str) -> LatencyEstimator:
    s = res.samples
    coef = fit_coefficients(s, vision_tokens)
    est = LatencyEstimator(coef, vision_tokens)
    c = res.configs
    if "tier" in c:
        for tier in knob_values(c, "tier"):
            sub = c[c["tier"] == tier]
            est.tier_tokens[str(tier)] = {
                "target": float(sub["target_vision_tokens_mean"].mean()),
                "actual": float(sub["actual_vision_tokens_mean"].mean()),
            }
    tgt = float(s["target_vision_tokens"].mean())
    est.token_ratio = float(s["actual_vision_tokens"].mean()) / tgt if tgt > 0 else 1.0
    est.defaults = {
        "input_text_tokens": float(s["input_text_tokens"].mean()),
        "output_tokens": float(s["output_tokens"].mean()),
    }
    est.knob_values = {k: [_plain(v) for v in knob_values(c, k)] for k in res.knobs if k in c}
    # Percentiles of an unmeasured configuration: the estimator predicts each sample's
    # expected latency; timing noise fattens the measured tail beyond that, by a factor
    # that we measure on the sweep (median over configurations of measured / predicted).
    pred = est.predict_frame(s)
    for p in ("p50", "p95", "p99"):
        ratios = []
        for name, idx in s.groupby("config", sort=False).groups.items():
            q = float(np.percentile(pred.loc[idx, "T_total"], float(p[1:])))
            meas = c.loc[c["config"] == name, f"T_total_{p}"]
            if q > 0 and len(meas):
                ratios.append(float(meas.iloc[0]) / q)
        est.tail_factor[p] = float(np.median(ratios)) if ratios else 1.0
    est.meta = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results_dir": str(res.root),
        "models": sorted({str(m) for m in c["model"]}),
        "tasks": sorted({str(t) for t in c["task"]}),
        "num_configs": len(c),
        "num_samples": len(s),
    }
    total = (
        pd.to_numeric(c["num_total_blocks"], errors="coerce").dropna()
        if "num_total_blocks" in c
        else []
    )
    if len(total):
        est.meta["num_total_blocks"] = int(total.max())
    return est


def fit_and_evaluate(
    res: SweepResults, vision_tokens: str = "actual"
) -> tuple[LatencyEstimator, Evaluation]:
    """The fitted estimator and its leave-configurations-out evaluation."""
    est = _fit_only(res, vision_tokens)
    ev = leave_configurations_out(res.samples, vision_tokens)
    pc = ev.per_config
    for t in TARGETS:
        rel = (pc[f"pred_{t}"] / pc[t] - 1.0).replace([np.inf, -np.inf], np.nan).dropna().to_numpy()
        est.band[t] = (
            (float(np.percentile(rel, 5)), float(np.percentile(rel, 95)))
            if rel.size
            else (0.0, 0.0)
        )
    est.band_source = f"5th-95th percentile of {ev.method} errors over {len(pc)} configurations"
    est.evaluation = {"method": ev.method, "metrics": ev.metrics.to_dict(orient="records")}
    return est, ev


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
