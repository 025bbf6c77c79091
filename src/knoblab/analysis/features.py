"""E3 features: the terms of each stage's cost model, chosen from what varies in a sweep.

The full model (every input varying) has these terms, with ``V`` vision tokens, ``T``
input text tokens, ``N = V + T``, ``O`` output tokens, ``D = O - 1`` decode steps,
``k`` = top_k and ``B`` = active blocks::

    vision   1, V, V^2
    prefill  1, N, B, B*N, B*N^2, B*k*N
    decode   1, D, D*B, D*B*k, D*B*(N+D/2), D*N
    other    1, V, N, O

A sweep rarely varies all of them, and a model may lack a knob altogether. The terms
of one sweep follow three rules:

- a knob the model does not have (no ``top_k`` on a dense model, no
  ``num_active_blocks``) is dropped from every term (``B*k*N`` becomes ``B*N``);
- a term that is zero on every sample (``D`` when every answer is one token) goes;
- terms that coincide once the inputs that did not vary are set aside are one term,
  the one with the most factors (``B`` held at 8 makes ``B*N`` and ``N`` the same
  column; ``B*N`` stays, so an unmeasured ``B`` scales the per-block cost, which is the
  transformer's law, and the prediction is flagged as extrapolated).

A user adapter's own knob ``u`` (any name) adds, per stage with scale ``S`` (``V``,
``N``, ``D``; none for other), the terms ``u`` and ``u*S`` when numeric, or the
indicators ``u=level`` and ``u=level*S`` of each level but the first when categorical;
both with either sign (a knob may make a stage cheaper). A knob that does not vary in
the sweep adds nothing.

Example:
    >>> import pandas as pd
    >>> # blocks held at 4, no top_k (a dense model): B*N and N are one term, B*N stays
    >>> s = pd.DataFrame({"actual_vision_tokens": [16, 64], "target_vision_tokens": [16, 64],
    ...     "input_text_tokens": [5, 5], "output_tokens": [3, 3], "num_active_blocks": [4, 4]})
    >>> FeatureSpace.from_samples(s, ["num_active_blocks"]).names("T_LLM_prefill")
    ['B', 'B*N', 'B*N^2']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from knoblab.records import TIER_ORDER

STAGE_TERMS: dict[str, list[tuple[tuple[str, ...], bool]]] = {
    "T_vision_total": [((), True), (("V",), False), (("V", "V"), False)],
    "T_LLM_prefill": [
        ((), True),
        (("N",), False),
        (("B",), False),
        (("B", "N"), False),
        (("B", "N", "N"), False),
        (("B", "k", "N"), False),
    ],
    "T_LLM_decode": [
        ((), True),
        (("D",), False),
        (("D", "B"), False),
        (("D", "B", "k"), False),
        (("D", "B", "N+D/2"), False),
        (("D", "N"), False),
    ],
    "other": [((), True), (("V",), True), (("N",), True), (("O",), True)],
}
STAGE_SCALE = {"T_vision_total": "V", "T_LLM_prefill": "N", "T_LLM_decode": "D", "other": ""}
VISION_KNOBS = ("tier", "vision_tokens")
KNOB_FACTOR = {"top_k": "k", "num_active_blocks": "B"}
TOKEN_INPUTS = {"V": "vision_tokens", "T": "input_text_tokens", "O": "output_tokens"}
RESERVED = {"1", "V", "T", "N", "O", "D", "k", "B", "N+D/2"}


def term_name(factors: Sequence[str]) -> str:
    """``("B", "N", "N")`` -> ``B*N^2``; ``()`` -> ``1``."""
    if not factors:
        return "1"
    counts: dict[str, int] = {}
    for f in factors:
        counts[f] = counts.get(f, 0) + 1
    parts = []
    for f, n in counts.items():
        base = f"({f})" if "+" in f else f
        parts.append(base if n == 1 else f"{base}^{n}")
    return "*".join(parts)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )


def _order(values: list[Any]) -> list[Any]:
    tiers = TIER_ORDER
    return sorted(
        values,
        key=lambda v: (
            (0, tiers.index(v)) if v in tiers else (1, v) if _is_number(v) else (2, str(v))
        ),
    )


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class FeatureSpace:
    """Which inputs a sweep varied and, per stage, the terms built from them (JSON-able).

    Attributes:
        vision_tokens: ``actual`` or ``target``: which vision-token count is ``V``.
        knobs: knob name -> ``{"kind", "values", "factor"}``; kind is ``vision``
            (tier / vision_tokens: they act through ``V``), ``k``, ``B``, ``numeric`` or
            ``categorical``; values are those the sweep measured, in cost order.
        ranges: input -> ``[min, max]`` over the fitted samples (``V``, ``T``, ``O`` and
            every numeric knob): outside it a prediction is an extrapolation.
        terms: stage -> ``[[factors...], free_sign]``.
    """

    vision_tokens: str = "actual"
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ranges: dict[str, list[float]] = field(default_factory=dict)
    terms: dict[str, list[list[Any]]] = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls,
        samples: pd.DataFrame,
        knobs: Sequence[str] | None = None,
        vision_tokens: str = "actual",
    ) -> FeatureSpace:
        """The terms for these per-sample rows; ``knobs`` are their knob columns (default:
        ``top_k`` and ``num_active_blocks`` where present)."""
        if knobs is None:
            knobs = [k for k in (*VISION_KNOBS, *KNOB_FACTOR) if k in samples]
        space = cls(vision_tokens)
        for name in knobs:
            if name not in samples:
                continue
            col = samples[name]
            values = [_plain(v) for v in pd.unique(col.dropna())]
            has_nan = bool(col.isna().any())
            if name in VISION_KNOBS:
                kind = "vision"
            elif name in KNOB_FACTOR and values and not has_nan and all(map(_is_number, values)):
                kind = KNOB_FACTOR[name]
            elif values and not has_nan and all(map(_is_number, values)):
                kind = "numeric"
            else:
                kind = "categorical"
                values = [*values, *([None] if has_nan else [])]
            if not values:
                continue
            factor = KNOB_FACTOR.get(name) if kind in ("k", "B") else name
            if kind == "numeric" and name in RESERVED:
                factor = f"{name}(knob)"
            space.knobs[name] = {"kind": kind, "values": _order(values), "factor": factor}
        x = space.inputs(samples, fill=False)
        for key in ("V", "T", "O"):
            space.ranges[key] = [float(x[key].min()), float(x[key].max())]
        for name, info in space.knobs.items():
            if info["kind"] in ("k", "B", "numeric"):
                space.ranges[name] = [float(min(info["values"])), float(max(info["values"]))]
        space.terms = {s: space._stage_terms(s, x) for s in STAGE_TERMS}
        return space

    # -- inputs and design ---------------------------------------------------------------
    def varied(self, name: str) -> bool:
        """Whether a knob took more than one value in the sweep."""
        return name in self.knobs and len(self.knobs[name]["values"]) > 1

    def inputs(
        self, frame: pd.DataFrame | Mapping[str, Any], fill: bool = True
    ) -> dict[str, np.ndarray]:
        """Factor arrays (``V``, ``T``, ``N``, ``O``, ``D``, ``k``, ``B``, user knobs) of rows.

        With ``fill``, a knob column the rows lack takes the sweep's value when the sweep
        held it constant (a missing varied knob raises KeyError).
        """

        rows = (
            len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values()), []))
        )

        def arr(name: str, missing: float) -> np.ndarray:
            # NOTE: a token count a record lacks (a text-only model has no vision tokens)
            # counts as ``missing``: 0 vision or text tokens, 1 output token
            if name not in frame:
                return np.full(rows, missing)
            return np.nan_to_num(np.atleast_1d(np.asarray(frame[name], dtype=float)), nan=missing)

        v = arr(f"{self.vision_tokens}_vision_tokens", 0.0)
        t, o = arr("input_text_tokens", 0.0), arr("output_tokens", 1.0)
        x = {"V": v, "T": t, "N": v + t, "O": o, "D": np.maximum(o - 1.0, 0.0)}
        n = len(v)
        for name, info in self.knobs.items():
            if info["kind"] == "vision":
                continue
            if name in frame:
                col = np.atleast_1d(np.asarray(frame[name], dtype=object))
            elif fill and len(info["values"]) == 1:
                col = np.full(n, info["values"][0], dtype=object)
            else:
                raise KeyError(name)
            if info["kind"] == "categorical":
                text = np.array([str(c) for c in col])
                for level in info["values"][1:]:
                    x[f"{name}={level}"] = (text == str(level)).astype(float)
            else:
                x[info["factor"]] = col.astype(float)
        return x

    def names(self, stage: str) -> list[str]:
        """The stage's term names, e.g. ``['1', 'N', 'B*N']``."""
        return [term_name(f) for f, _ in self.terms[stage]]

    def free(self, stage: str) -> np.ndarray:
        """Which terms of the stage take either sign."""
        return np.array([bool(free) for _, free in self.terms[stage]], dtype=bool)

    def design(self, stage: str, x: Mapping[str, np.ndarray]) -> np.ndarray:
        """The stage's design matrix (rows x terms)."""
        n = len(x["V"])
        cols = []
        for factors, _ in self.terms[stage]:
            col = np.ones(n)
            for f in factors:
                col = col * (x["N"] + x["D"] / 2 if f == "N+D/2" else x[f])
            cols.append(col)
        return np.column_stack(cols) if cols else np.empty((n, 0))

    # -- term selection ------------------------------------------------------------------
    def _stage_terms(self, stage: str, x: Mapping[str, np.ndarray]) -> list[list[Any]]:
        present = {"k", "B"} & {i["factor"] for i in self.knobs.values()}
        varies = {name: bool(np.ptp(a) > 0) for name, a in x.items() if len(a)}
        varies["N+D/2"] = varies["N"] or varies["D"]
        zero = {name for name, a in x.items() if len(a) and not np.any(a)}
        terms: list[tuple[tuple[str, ...], bool]] = []
        for factors, free in STAGE_TERMS[stage]:
            kept = tuple(f for f in factors if f not in ("k", "B") or f in present)
            if not any(f in zero for f in kept):
                terms.append((kept, free))
        scale = STAGE_SCALE[stage]
        for name, info in self.knobs.items():
            if info["kind"] not in ("numeric", "categorical") or len(info["values"]) < 2:
                continue
            factors = (
                [info["factor"]]
                if info["kind"] == "numeric"
                else [f"{name}={lv}" for lv in info["values"][1:]]
            )
            for f in factors:
                terms.append(((f,), True))
                if scale and scale not in zero:
                    terms.append(((f, scale), True))
        return [[list(f), free] for f, free in _dedupe(terms, varies)]


def _dedupe(
    terms: list[tuple[tuple[str, ...], bool]], varies: Mapping[str, bool]
) -> list[tuple[tuple[str, ...], bool]]:
    """One term per signature (its varying factors); the one with the most factors wins."""
    groups: dict[tuple[str, ...], list[tuple[tuple[str, ...], bool]]] = {}
    for factors, free in terms:
        sig = tuple(sorted(f for f in factors if varies.get(f, True)))
        groups.setdefault(sig, []).append((factors, free))
    out = []
    for group in groups.values():
        best = max(group, key=lambda t: (len(set(t[0])), -len(t[0])))
        out.append((best[0], any(free for _, free in group)))
    return out


__all__ = ["FeatureSpace", "STAGE_TERMS", "term_name"]
