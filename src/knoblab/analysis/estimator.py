"""E3 — a latency estimator: stage latencies from tokens and knobs, fitted on per-sample records.

Each stage gets a small linear model whose terms follow the cost of a decoder block,
so that it interpolates and extrapolates the way the hardware does. With ``V`` vision
tokens (actual by default, or target), ``T`` input text tokens, ``N = V + T`` prefill
tokens, ``k`` = top_k, ``B`` = active blocks and ``D = output_tokens - 1`` decode steps
(prefill emits the first token), a sweep that varies everything gets::

    vision   ~ 1, V, V^2                          (patch encoder over crops)
    prefill  ~ 1, N, B, B*N, B*N^2, B*k*N         (per block: norms/attention proj ~ N,
                                                   attention scores ~ N^2, experts ~ k*N)
    decode   ~ 1, D, D*B, D*B*k, D*B*(N + D/2), D*N  (per step and block: weights + k experts
                                                   + attention over the KV cache)
    other    ~ 1, V, N, O                         (T_total minus the stages: pre/post-processing)
    T_total  = vision + prefill + decode + other

Any other set of knobs works: the terms come from what the sweep actually varied
(:mod:`knoblab.analysis.features`): a dense model has no ``k``, a sweep at fixed blocks
keeps ``B`` as a constant factor, and a user adapter's own knobs (numeric or
categorical) add terms of their own. A knob the model does not have is never an error.

Why this and not a boosted tree or a neural net (nn-Meter uses random forests per
kernel): a sweep holds a handful of configurations, and a tree cannot predict outside
the knob values it saw, whereas these terms are the cost model of a transformer and
extend to unmeasured ``top_k`` or block counts. The fit is non-negative least squares
(``scipy.optimize.nnls``) on rows weighted by 1/latency (the row's configuration's
median, see ``_config_scale``): non-negative because every term is a cost (it keeps
extrapolation sane when terms are collinear), weighted so that it minimises relative
error, the figure nn-Meter reports. Intercepts and user-knob terms take either sign.

NOTE: the fit never touches the per-sample rows twice. Each configuration's rows are
compressed once to the R factor of a QR decomposition of ``[X | y]`` (``terms + 1``
rows per configuration): ``||X b - y||^2 = ||R [b; -1]||^2`` for every ``b``, so a
fit on the stacked R blocks of any set of configurations minimises exactly the same
weighted sum of squares as the fit on their rows, with the numerical stability of QR
(no squared condition number as with ``X^T X``). Leaving one configuration out is then
a fit on ``(configurations - 1) x (terms + 1)`` rows instead of every sample.

Evaluation leaves whole configurations out (fit on the others, predict the held-out
one) and reports, as nn-Meter does, MAPE, RMSPE and the share of predictions within
±5% and ±10%, per configuration (mean latency of its samples) and per sample.

The uncertainty band of a prediction comes from those held-out errors: the 5th and
95th percentiles of (predicted / measured - 1) over held-out configurations. With
few configurations that is close to the worst held-out error, which is the honest
reading. Its **coverage** is measured the jackknife way (Barber et al., "Predictive
inference with the jackknife+", 2021): for each held-out configuration, the band built
from the *other* configurations' held-out errors, and whether its measured mean lies
inside; the share is ``evaluation["coverage"]`` (nominal 90%).

A prediction lists in ``extrapolated`` every input outside what the sweep measured:
vision, text and output tokens (per-sample range), ``top_k``, blocks and numeric user
knobs (range of values), and a knob held constant in the sweep asked at another value.

The estimator is saved as JSON (no pickle): coefficients, terms, the band, and what it
needs to turn knobs into tokens — for a tier (or any knob whose values set the vision
tokens), the mean target and actual vision tokens that the sweep's records show.

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from knoblab.analysis.features import STAGE_TERMS, FeatureSpace, term_name
from knoblab.analysis.load import STAGES, SweepResults
from knoblab.atomic import atomic_write
from knoblab.errors import CheckpointError, ConfigError, UnknownKeyError

FORMAT = "knoblab-latency-estimator"
FORMAT_VERSION = 2
TARGETS = (*STAGES, "T_total")
FIT_STAGES = (*STAGES, "other")
VISION_TOKEN_MODES = ("actual", "target")
BAND_PERCENTILES = (5.0, 95.0)
TOKEN_KEYS = ("input_text_tokens", "output_tokens")
# The full model's terms (every input varying), for docs and reports; a fitted
# estimator's own terms are ``LatencyEstimator.feature_names()``.
FEATURES: dict[str, list[tuple[str, None, bool]]] = {
    s: [(term_name(f), None, free) for f, free in terms] for s, terms in STAGE_TERMS.items()
}


# -- fitting on per-configuration QR blocks --------------------------------------------------
@dataclass
class _Blocks:
    """One stage's rows, compressed per configuration (see the module NOTE)."""

    R: np.ndarray  # configurations x (p+1) x (p+1): R of QR([X/scale | y]), zero-padded
    scale: np.ndarray  # column scaling of X (conditioning only: NNLS is scale-invariant)
    median: np.ndarray  # per configuration: its median latency (the weight's scale)
    count: np.ndarray  # per configuration: its number of rows
    free: np.ndarray  # which terms take either sign


def _compress(
    X: np.ndarray, y: np.ndarray, ref: np.ndarray, codes: np.ndarray, n: int, free: np.ndarray
) -> _Blocks:
    scale = np.abs(X).max(axis=0) if len(X) else np.ones(X.shape[1])
    scale[scale == 0] = 1.0
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n + 1))
    Xy = np.column_stack([X / scale, y])[order]
    ref_sorted = ref[order]
    q = Xy.shape[1]
    # zero rows add nothing to a sum of squares: pad each R to (p+1) x (p+1) and stack
    R, med, cnt = np.zeros((n, q, q)), np.zeros(n), np.zeros(n, dtype=int)
    for c in range(n):
        rows = Xy[bounds[c] : bounds[c + 1]]
        if len(rows):
            r = np.linalg.qr(rows, mode="r")
            R[c, : r.shape[0]] = r
        cnt[c] = len(rows)
        med[c] = float(np.median(ref_sorted[bounds[c] : bounds[c + 1]])) if len(rows) else 1.0
    return _Blocks(R, scale, med, cnt, free)


def _repeated_median(values: np.ndarray, counts: np.ndarray) -> float:
    """``np.median(np.repeat(values, counts))`` without building the repeated array."""
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(counts[order])
    total = int(cum[-1]) if len(cum) else 0
    if total == 0:
        return 0.0

    def at(i: int) -> float:
        return float(v[np.searchsorted(cum, i, side="right")])

    return at(total // 2) if total % 2 else (at(total // 2 - 1) + at(total // 2)) / 2


def _solve(b: _Blocks, use: np.ndarray) -> np.ndarray:
    """NNLS on the chosen configurations' blocks, each weighted by 1/its median latency."""
    p = len(b.scale)
    if p == 0:
        return np.zeros(0)
    absmed = np.abs(b.median[use])
    floor = max(_repeated_median(absmed, b.count[use]) * 0.05, 1e-9)
    w = 1.0 / np.maximum(absmed, floor)
    M = (b.R[use] * w[:, None, None]).reshape(-1, p + 1)
    A = np.column_stack([M[:, :p], -M[:, :p][:, b.free]])
    sol, _ = nnls(A, M[:, p], maxiter=50 * A.shape[1])
    beta = sol[:p].copy()
    beta[b.free] -= sol[p:]
    return beta / b.scale


def _stage_data(samples: pd.DataFrame, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """(target, weight reference) of a stage: ``other`` is T_total minus the stages."""
    if stage == "other":
        total = samples["T_total"].to_numpy(float)
        return total - samples[list(STAGES)].to_numpy(float).sum(axis=1), total
    y = samples[stage].to_numpy(float)
    return y, y


def _all_blocks(
    samples: pd.DataFrame, space: FeatureSpace
) -> tuple[dict[str, _Blocks], dict[str, np.ndarray], np.ndarray, int]:
    codes, uniq = pd.factorize(
        samples["config"] if "config" in samples else pd.Series(np.zeros(len(samples)))
    )
    codes = np.asarray(codes)
    x = space.inputs(samples, fill=False)
    blocks, designs = {}, {}
    for s in FIT_STAGES:
        X = space.design(s, x)
        y, ref = _stage_data(samples, s)
        blocks[s] = _compress(X, y, ref, codes, len(uniq), space.free(s))
        designs[s] = X
    return blocks, designs, codes, len(uniq)


def fit_coefficients(
    samples: pd.DataFrame,
    vision_tokens: str = "actual",
    knobs: Sequence[str] | None = None,
    space: FeatureSpace | None = None,
) -> dict[str, list[float]]:
    """Fit every stage's coefficients on per-sample rows (terms from ``space`` or the rows)."""
    if vision_tokens not in VISION_TOKEN_MODES:
        raise ConfigError("vision_tokens", vision_tokens, f"one of {', '.join(VISION_TOKEN_MODES)}")
    space = space or FeatureSpace.from_samples(samples, knobs, vision_tokens)
    blocks, _, _, n = _all_blocks(samples, space)
    use = np.ones(n, dtype=bool)
    return {s: _solve(blocks[s], use).tolist() for s in FIT_STAGES}


# -- the estimator ---------------------------------------------------------------------------
@dataclass
class Prediction:
    """Predicted latencies (ms) of one configuration, with a band.

    ``value``, ``low`` and ``high`` map each of T_vision_total, T_LLM_prefill, T_LLM_decode
    and T_total to milliseconds; ``inputs`` are the token counts and knobs used;
    ``extrapolated`` names every input outside what the sweep measured.
    """

    value: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    inputs: dict[str, Any]
    band_source: str
    extrapolated: list[str] = field(default_factory=list)


def _band(value: float, lo_e: float, hi_e: float) -> tuple[float, float]:
    # measured = predicted / (1 + e): the largest over-prediction gives the low end
    return value / (1.0 + max(hi_e, 0.0)), (
        value / (1.0 + min(lo_e, 0.0)) if lo_e > -1 else math.inf
    )


@dataclass
class LatencyEstimator:
    """A fitted per-stage latency model; JSON-serialisable (see the module docstring)."""

    coef: dict[str, list[float]]
    vision_tokens: str = "actual"
    space: FeatureSpace = field(default_factory=FeatureSpace)
    band: dict[str, tuple[float, float]] = field(default_factory=dict)
    band_source: str = "none"
    tail_factor: dict[str, float] = field(default_factory=dict)
    tier_tokens: dict[str, dict[str, float]] = field(default_factory=dict)
    knob_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_ratio: float = 1.0
    defaults: dict[str, float] = field(default_factory=dict)
    knob_values: dict[str, list[Any]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # -- what it knows ----------------------------------------------------------------------
    def feature_names(self) -> dict[str, list[str]]:
        """Stage -> its term names, e.g. ``{"T_LLM_prefill": ["1", "N", "B*N", ...], ...}``."""
        return {s: self.space.names(s) for s in FIT_STAGES}

    def knob_names(self) -> list[str]:
        """The knobs of the sweep other than tier / vision_tokens (which set ``V``)."""
        return [k for k, i in self.space.knobs.items() if i["kind"] != "vision"]

    def allowed_keys(self) -> list[str]:
        """Every key ``predict`` (and ``knoblab estimate``) accepts for this estimator."""
        vision = ["tier"] if self.tier_tokens else []
        return [*vision, "vision_tokens", *self.knob_names(), *TOKEN_KEYS]

    # -- prediction -------------------------------------------------------------------------
    def predict_inputs(self, x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-row predictions for every stage, ``other`` and ``T_total`` (ms)."""
        out = {
            s: self.space.design(s, x) @ np.asarray(self.coef[s], dtype=float) for s in FIT_STAGES
        }
        out["T_total"] = sum((out[s] for s in FIT_STAGES), np.zeros_like(out["other"]))
        return out

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for per-sample rows (columns as in ``SweepResults.samples``).

        A knob the sweep held constant may be missing from ``frame``; a varied one may not.
        """
        try:
            x = self.space.inputs(frame)
        except KeyError as exc:
            name = exc.args[0]
            raise ConfigError(name, None, f"a column of values: the sweep varied {name}") from None
        pred = self.predict_inputs(x)
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
        table = self.knob_tokens.get("vision_tokens")
        if table and self.vision_tokens == "actual":
            xs = [float(x) for x in table["values"]]
            if min(xs) <= float(vision_tokens) <= max(xs):
                # a measured target reads its own mean actual tokens (a processor can cap
                # them far below the target); between two measured targets, linearly
                return _interp_tokens(table, vision_tokens, "actual")
        # NOTE: outside them, target -> actual tokens by the sweep's mean actual/target ratio
        return float(vision_tokens) * (self.token_ratio if self.vision_tokens == "actual" else 1.0)

    def predict(
        self,
        *,
        tier: str | None = None,
        vision_tokens: float | None = None,
        input_text_tokens: float | None = None,
        output_tokens: float | None = None,
        **knobs: Any,
    ) -> Prediction:
        """Predict one configuration's mean stage latencies, with the held-out-error band.

        ``knobs`` are the sweep's other knobs by name (``top_k=4``, ``num_active_blocks=8``,
        a user adapter's ``quality="high"``): a knob the sweep varied is required, one it
        held constant defaults to that value. Tokens not given take the sweep's mean
        (``defaults``); a tier takes the mean vision tokens of that tier in the sweep.

        Raises:
            ConfigError: an unknown knob or tier, a missing varied knob, a value that is
                not allowed (top_k or blocks below 1, blocks above the model's, an
                unmeasured category).
        """
        values = self._knob_settings(knobs)
        v, extrap = self._vision(tier, vision_tokens, values)
        t = float(
            self.defaults.get("input_text_tokens", 0.0)
            if input_text_tokens is None
            else input_text_tokens
        )
        o = float(
            self.defaults.get("output_tokens", 1.0) if output_tokens is None else output_tokens
        )
        row: dict[str, list[Any]] = {f"{self.vision_tokens}_vision_tokens": [v]}
        row |= {"input_text_tokens": [t], "output_tokens": [o]}
        row |= {k: [val] for k, val in values.items()}
        pred = self.predict_inputs(self.space.inputs(row))
        value = {k: float(pred[k][0]) for k in TARGETS}
        low, high = {}, {}
        for k in TARGETS:
            low[k], high[k] = _band(value[k], *self.band.get(k, (0.0, 0.0)))
        extrap += self._outside({"T": t, "O": o}, values)
        inputs: dict[str, Any] = {"vision_tokens": v, "input_text_tokens": t, "output_tokens": o}
        return Prediction(value, low, high, inputs | values, self.band_source, extrap)

    def _knob_settings(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every non-vision knob's value: given, or the sweep's constant; validated."""
        allowed = self.allowed_keys()
        for k, val in given.items():
            if k not in self.knob_names():
                raise UnknownKeyError(k, val, allowed)
        out: dict[str, Any] = {}
        for name in self.knob_names():
            info = self.space.knobs[name]
            seen = info["values"]
            if name not in given or given[name] is None:
                if len(seen) > 1:
                    shown = ", ".join(map(str, seen[:8])) + (" ..." if len(seen) > 8 else "")
                    raise ConfigError(name, None, f"a value (required: the sweep measured {shown})")
                out[name] = seen[0]
                continue
            val = given[name]
            if info["kind"] in ("k", "B"):
                if not isinstance(val, (int, float)) or isinstance(val, bool) or val < 1:
                    raise ConfigError(name, val, "an integer >= 1")
                total = self.meta.get("num_total_blocks")
                if info["kind"] == "B" and total and val > total:
                    raise ConfigError(name, val, f"an integer in 1..{total} (the model's blocks)")
            elif info["kind"] == "numeric":
                if (
                    not isinstance(val, (int, float))
                    or isinstance(val, bool)
                    or not math.isfinite(val)
                ):
                    raise ConfigError(name, val, "a number")
            elif str(val) not in {str(s) for s in seen}:
                raise ConfigError(
                    name, val, f"one of the values measured: {', '.join(map(str, seen))}"
                )
            out[name] = val
        return out

    def _vision(
        self, tier: str | None, vision_tokens: float | None, knobs: Mapping[str, Any]
    ) -> tuple[float, list[str]]:
        """Vision tokens ``V`` of a configuration, and the extrapolation flag on them."""
        if tier is not None and vision_tokens is not None:
            raise ConfigError(
                "vision_tokens", vision_tokens, "unset when tier is given (one of the two)"
            )
        vision_knobs = [k for k, i in self.space.knobs.items() if i["kind"] == "vision"]
        said = f"vision_tokens={vision_tokens:g}" if vision_tokens is not None else ""
        if tier is not None or vision_tokens is not None:
            v = self.tokens_for(tier, vision_tokens)
            said = f"tier={tier}" if tier is not None else said
        elif driver := next((k for k in self.knob_tokens if k in knobs), None):
            v = _interp_tokens(self.knob_tokens[driver], knobs[driver], self.vision_tokens)
            said = f"{driver}={knobs[driver]}"
        elif any(self.space.varied(k) for k in vision_knobs):
            names = "|".join(self.tier_tokens) or "name"
            raise ConfigError("tier", None, f"tier=<{names}> or vision_tokens=<target tokens>")
        else:
            v = float(self.defaults.get("vision_tokens", 0.0))
        lo, hi = self.space.ranges.get("V", (-math.inf, math.inf))
        if said and not lo <= v <= hi:
            return v, [
                f"{said} ({v:.0f} {self.vision_tokens} vision tokens) outside the sweep's {lo:g}..{hi:g}"
            ]
        return v, []

    def _outside(self, tokens: Mapping[str, float], knobs: Mapping[str, Any]) -> list[str]:
        """Extrapolation flags for text and output tokens and every non-vision knob."""
        out = []
        for key, val in tokens.items():
            lo, hi = self.space.ranges.get(key, (-math.inf, math.inf))
            if not lo <= val <= hi:
                name = "input_text_tokens" if key == "T" else "output_tokens"
                out.append(f"{name}={val:g} outside the sweep's {lo:g}..{hi:g} (per sample)")
        for name, val in knobs.items():
            info = self.space.knobs[name]
            seen = info["values"]
            if len(seen) == 1 and str(val) != str(seen[0]):
                effect = (
                    "scaled by the cost model" if info["kind"] in ("k", "B") else "not modelled"
                )
                out.append(
                    f"{name}={val}: the sweep measured only {name}={seen[0]} (its effect is {effect})"
                )
            elif name in self.space.ranges:
                lo, hi = self.space.ranges[name]
                if not lo <= float(val) <= hi:
                    out.append(f"{name}={val} outside the sweep's {lo:g}..{hi:g}")
        return out

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"], d["format_version"] = FORMAT, FORMAT_VERSION
        d["features"] = self.feature_names()
        return d

    def save(self, path: str | Path) -> Path:
        """Write the estimator as JSON (``knoblab.atomic.atomic_write``)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(p, json.dumps(_jsonable(self.to_dict()), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LatencyEstimator:
        """Read an estimator written by :meth:`save` (format version 1 is migrated).

        Raises:
            CheckpointError: not a knoblab estimator file, or of an unknown format version.
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
        if d.get("format_version") == 1:
            d = _migrate_v1(d)
        if d.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"estimator format_version={d.get('format_version')!r} in {p}: allowed is 1 or {FORMAT_VERSION}"
            )
        _check_fields(d, p)
        names = {f.name for f in cls.__dataclass_fields__.values()}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["band"] = {k: tuple(v) for k, v in kwargs.get("band", {}).items()}
        try:
            kwargs["space"] = FeatureSpace(**kwargs.get("space", {}))
            est = cls(**kwargs)
            listed = est.feature_names()
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"estimator={str(p)!r} is damaged ({type(exc).__name__}: {str(exc)[:80]}): "
                "allowed is an estimator.json written by knoblab analyze; refit it"
            ) from None
        if d.get("features") != listed:
            raise CheckpointError(
                f"estimator={str(p)!r} has coefficients for other terms than it lists: refit it"
            )
        return est


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


#: The fields of estimator.json whose type ``load`` checks: (field, what it must be).
_FIELD_KINDS = (
    ("coef", "a mapping of stage -> list of numbers"),
    ("band", "a mapping of stage -> [low, high] numbers"),
    ("tail_factor", "a mapping of stage -> number"),
    ("defaults", "a mapping of name -> number"),
    ("space", "a mapping (the feature space)"),
)


def _field_ok(name: str, v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    if name == "coef":
        return all(isinstance(c, list) and all(map(_is_number, c)) for c in v.values())
    if name == "band":
        return all(
            isinstance(b, list) and len(b) == 2 and all(map(_is_number, b)) for b in v.values()
        )
    if name in ("tail_factor", "defaults"):
        return all(map(_is_number, v.values()))
    return True


def _check_fields(d: Mapping[str, Any], path: Path) -> None:
    """One line naming the file and the first field of the wrong type (a tampered file)."""
    for name, allowed in _FIELD_KINDS:
        if name == "coef" and name not in d:
            raise CheckpointError(f"estimator={str(path)!r}: field coef is missing: refit it")
        if name in d and not _field_ok(name, d[name]):
            raise CheckpointError(
                f"estimator={str(path)!r}: field {name} is {type(d[name]).__name__} "
                f"{str(d[name])[:40]!r}: allowed is {allowed}"
            )


def _migrate_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (before 2026-12): fixed terms of the reference knobs, flags on top_k and
    blocks only. Its terms are the full model's; its ranges are those of its knob values."""
    d = dict(d)
    vision = "tier" if d.get("tier_tokens") else "vision_tokens"
    knobs: dict[str, dict[str, Any]] = {
        vision: {"kind": "vision", "values": list(d.get("tier_tokens") or [0]), "factor": vision}
    }
    ranges: dict[str, list[float]] = {}
    for name, factor in (("top_k", "k"), ("num_active_blocks", "B")):
        seen = (d.get("knob_values") or {}).get(name) or [1]
        knobs[name] = {"kind": factor, "values": sorted(seen), "factor": factor}
        ranges[name] = [float(min(seen)), float(max(seen))]
    terms = {s: [[list(f), free] for f, free in t] for s, t in STAGE_TERMS.items()}
    full = {s: [term_name(f) for f, _ in t] for s, t in STAGE_TERMS.items()}
    if d.get("features", full) == full:  # else: a v1 file of other terms, refused by load
        d["features"] = full
    d["space"] = asdict(FeatureSpace(d.get("vision_tokens", "actual"), knobs, ranges, terms))
    d["format_version"] = FORMAT_VERSION
    return d


def _interp_tokens(table: Mapping[str, Any], value: Any, mode: str) -> float:
    """Mean vision tokens at a knob value: the measured one, else linear in numeric values."""
    xs, ys = table["values"], table[mode]
    for x, y in zip(xs, ys, strict=True):
        if str(x) == str(value):
            return float(y)
    xf, yf = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    i = int(np.clip(np.searchsorted(xf, float(value)), 1, len(xf) - 1))
    x0, x1, y0, y1 = xf[i - 1], xf[i], yf[i - 1], yf[i]
    return float(y0 + (y1 - y0) * (float(value) - x0) / (x1 - x0)) if x1 != x0 else float(y0)


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
    within_5, within_10, n. ``coverage``: rows (target, coverage %, nominal %, n) of
    the band on held-out configurations (jackknife, see the module docstring).
    """

    per_config: pd.DataFrame
    per_sample: pd.DataFrame
    metrics: pd.DataFrame
    method: str
    coverage: pd.DataFrame = field(default_factory=pd.DataFrame)


def leave_configurations_out(
    samples: pd.DataFrame,
    vision_tokens: str = "actual",
    knobs: Sequence[str] | None = None,
    space: FeatureSpace | None = None,
) -> Evaluation:
    """Fit on all configurations but one, predict that one, for every configuration.

    With fewer than 3 configurations there is nothing to hold out; the evaluation is
    then in-sample and ``method`` says so. The terms are those of the whole sweep
    (``space``), so every fold fits the same model.
    """
    if vision_tokens not in VISION_TOKEN_MODES:
        raise ConfigError("vision_tokens", vision_tokens, f"one of {', '.join(VISION_TOKEN_MODES)}")
    space = space or FeatureSpace.from_samples(samples, knobs, vision_tokens)
    return _evaluate(samples, space)[0]


def _evaluate(
    samples: pd.DataFrame, space: FeatureSpace
) -> tuple[Evaluation, dict[str, list[float]]]:
    """The evaluation, and the fit on every configuration (the same blocks serve both)."""
    blocks, designs, codes, n = _all_blocks(samples, space)
    loco = n >= 3
    method = "leave-one-configuration-out" if loco else "in-sample (fewer than 3 configurations)"
    pred = {s: np.zeros(len(samples)) for s in FIT_STAGES}
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n + 1))
    everyone = np.ones(n, dtype=bool)
    coef_all = {}
    for s in FIT_STAGES:
        beta_all = _solve(blocks[s], everyone)
        coef_all[s] = beta_all.tolist()
        for c in range(n):
            rows = order[bounds[c] : bounds[c + 1]]
            if loco:
                use = everyone.copy()
                use[c] = False
                beta = _solve(blocks[s], use)
            else:
                beta = beta_all
            pred[s][rows] = designs[s][rows] @ beta
    total = sum((pred[s] for s in FIT_STAGES), np.zeros(len(samples)))
    cols = {f"pred_{s}": pred[s] for s in STAGES} | {"pred_T_total": total}
    per_sample = pd.concat(
        [samples[["config", *TARGETS]].reset_index(drop=True), pd.DataFrame(cols)], axis=1
    ).set_axis(samples.index)
    per_config = per_sample.groupby("config", sort=False).mean(numeric_only=True).reset_index()
    rows = []
    for level, frame in (("config", per_config), ("sample", per_sample)):
        for t in TARGETS:
            rows.append(
                {"level": level, "target": t, **error_metrics(frame[f"pred_{t}"], frame[t])}
            )
    ev = Evaluation(per_config, per_sample, pd.DataFrame(rows), method, band_coverage(per_config))
    return ev, coef_all


def _relative_errors(per_config: pd.DataFrame, target: str) -> np.ndarray:
    rel = per_config[f"pred_{target}"] / per_config[target] - 1.0
    return rel.replace([np.inf, -np.inf], np.nan).to_numpy(float)


def band_coverage(per_config: pd.DataFrame) -> pd.DataFrame:
    """The band's coverage on held-out configurations, per target (jackknife reading).

    For each configuration the band is the 5th-95th percentile of the *other*
    configurations' held-out errors; it covers the configuration when its measured mean
    lies within ``[pred / (1 + hi), pred / (1 + lo)]``, i.e. its own error lies in
    ``[min(lo, 0), max(hi, 0)]``. Nominal coverage: 90%.
    """
    rows = []
    for t in TARGETS:
        rel = _relative_errors(per_config, t)
        ok = np.flatnonzero(np.isfinite(rel))
        hits = []
        for i in ok:
            others = rel[ok[ok != i]]
            if others.size < 2:
                continue
            lo, hi = np.percentile(others, BAND_PERCENTILES)
            hits.append(min(lo, 0.0) - 1e-12 <= rel[i] <= max(hi, 0.0) + 1e-12)
        cov = float(np.mean(hits) * 100) if hits else math.nan
        nominal = BAND_PERCENTILES[1] - BAND_PERCENTILES[0]
        rows.append({"target": t, "coverage": cov, "nominal": nominal, "n": len(hits)})
    return pd.DataFrame(rows)


# -- the whole fit ---------------------------------------------------------------------------
def fit_estimator(
    res: SweepResults, vision_tokens: str = "actual", evaluate: bool = True
) -> LatencyEstimator:
    """Fit on every usable sample of a sweep; with ``evaluate``, leave configurations out too.

    The estimator's ``evaluation`` then holds the held-out metrics and the band's coverage,
    and its band comes from them (without, the band is empty). :func:`fit_and_evaluate`
    also returns the evaluation tables.
    """
    return fit_and_evaluate(res, vision_tokens)[0] if evaluate else _fit_only(res, vision_tokens)


def _mean(frame: pd.DataFrame, column: str) -> float:
    """A column's mean, 0.0 when the records lack it (no vision tokens: a text-only model)."""
    if column not in frame:
        return 0.0
    m = pd.to_numeric(frame[column], errors="coerce").mean()
    return float(m) if np.isfinite(m) else 0.0


def _knob_token_tables(res: SweepResults, space: FeatureSpace) -> dict[str, dict[str, Any]]:
    """Mean target/actual vision tokens per value of each knob whose values set them."""
    c = res.configs
    out: dict[str, dict[str, Any]] = {}
    for name, info in space.knobs.items():
        target_knob = name == "vision_tokens"  # its values are targets: always tabled
        if name not in c or len(info["values"]) < 2:
            continue
        if info["kind"] in ("vision", "k", "B") and not target_knob:
            continue
        table: dict[str, Any] = {"values": [], "target": [], "actual": []}
        for val in info["values"]:
            sub = c[c[name].astype(str) == str(val)]
            table["values"].append(val)
            for mode in ("target", "actual"):
                table[mode].append(_mean(sub, f"{mode}_vision_tokens_mean"))
        means = np.asarray(table["actual"], dtype=float)
        # a knob sets the vision tokens when its values' mean tokens differ by > 5%
        # (top_k-like knobs crossed with a vision knob have equal means at every value)
        if target_knob or (np.nanmin(means) > 0 and np.nanmax(means) / np.nanmin(means) > 1.05):
            out[name] = table
    return out


def _fit_only(
    res: SweepResults,
    vision_tokens: str,
    space: FeatureSpace | None = None,
    coef: dict[str, list[float]] | None = None,
) -> LatencyEstimator:
    s, c = res.samples, res.configs
    space = space or FeatureSpace.from_samples(s, res.knobs, vision_tokens)
    coef = coef or fit_coefficients(s, vision_tokens, space=space)
    est = LatencyEstimator(coef, vision_tokens, space)
    if "tier" in space.knobs:
        for tier in space.knobs["tier"]["values"]:
            sub = c[c["tier"] == tier]
            est.tier_tokens[str(tier)] = {
                "target": _mean(sub, "target_vision_tokens_mean"),
                "actual": _mean(sub, "actual_vision_tokens_mean"),
            }
    est.knob_tokens = _knob_token_tables(res, space)
    tgt = _mean(s, "target_vision_tokens")
    est.token_ratio = _mean(s, "actual_vision_tokens") / tgt if tgt > 0 else 1.0
    est.defaults = {
        "vision_tokens": _mean(s, f"{vision_tokens}_vision_tokens"),
        "input_text_tokens": float(s["input_text_tokens"].mean()),
        "output_tokens": float(s["output_tokens"].mean()),
    }
    est.knob_values = {k: list(i["values"]) for k, i in space.knobs.items()}
    # Percentiles of an unmeasured configuration: the estimator predicts each sample's
    # expected latency; timing noise fattens the measured tail beyond that, by a factor
    # that we measure on the sweep (median over configurations of measured / predicted).
    pred = pd.Series(est.predict_inputs(space.inputs(s, fill=False))["T_total"], index=s.index)
    by_config = pred.groupby(s["config"].to_numpy(), sort=False)
    measured = c.set_index("config")
    for p in res.percentiles:  # the percentiles the records hold (run.percentiles)
        q = by_config.quantile(float(p[1:]) / 100)  # linear interpolation, as numpy's default
        col = f"T_total_{p}"
        if col not in measured:
            est.tail_factor[p] = 1.0
            continue
        ratio = (measured[col].reindex(q.index) / q)[q > 0].dropna()
        est.tail_factor[p] = float(np.median(ratio)) if len(ratio) else 1.0
    est.meta = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results_dir": str(res.root),
        "models": sorted({str(m) for m in c["model"]}),
        "tasks": sorted({str(t) for t in c["task"]}),
        "knobs": list(res.knobs),
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
    if vision_tokens not in VISION_TOKEN_MODES:
        raise ConfigError("vision_tokens", vision_tokens, f"one of {', '.join(VISION_TOKEN_MODES)}")
    space = FeatureSpace.from_samples(res.samples, res.knobs, vision_tokens)
    ev, coef = _evaluate(res.samples, space)
    est = _fit_only(res, vision_tokens, space, coef)
    pc = ev.per_config
    for t in TARGETS:
        rel = _relative_errors(pc, t)
        rel = rel[np.isfinite(rel)]
        est.band[t] = (
            tuple(float(v) for v in np.percentile(rel, BAND_PERCENTILES))
            if rel.size
            else (0.0, 0.0)
        )
    lo, hi = BAND_PERCENTILES
    est.band_source = (
        f"{lo:g}th-{hi:g}th percentile of {ev.method} errors over {len(pc)} configurations"
    )
    est.evaluation = {
        "method": ev.method,
        "metrics": ev.metrics.to_dict(orient="records"),
        "coverage": ev.coverage.to_dict(orient="records"),
        "coverage_method": (
            "jackknife: each held-out configuration against the band of the other "
            "configurations' held-out errors; share whose measured mean lies inside (%)"
        ),
        "features": est.feature_names(),
    }
    return est, ev
