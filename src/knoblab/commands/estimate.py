"""``knoblab estimate``: predict the latency of a configuration, measured or not, with a band.

    knoblab estimate tier=high top_k=4 num_active_blocks=12 [input_text_tokens=20] [output_tokens=4]
                     [vision_tokens=1008] [KNOB=VALUE ...] [--estimator PATH | --results DIR] [--json]

The estimator is an ``estimator.json`` written by ``knoblab analyze`` (``--estimator``),
or fitted on the spot from a results directory (``--results``). The knobs are those of
the sweep it was fitted on (``top_k=4 num_active_blocks=12`` for the reference model, a
user adapter's own names for its knobs); a knob the sweep varied is required, one it held
constant defaults to its value, and an unknown name is a one-line error listing the
allowed keys. A tier becomes the mean vision tokens that the sweep's records show for
it; tokens not given take the sweep's means. Every input outside what the sweep measured
is listed as an extrapolation. The work is ``LatencyEstimator.predict``.
"""

from __future__ import annotations

import json
from typing import Any

from knoblab.errors import ConfigError, UnknownKeyError

TOKEN_KEYS = ("vision_tokens", "input_text_tokens", "output_tokens")
FLAGS = ("--estimator", "--results", "--json")
USAGE = __doc__.split("\n\n")[1].strip() if __doc__ else ""
#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one on a tiny sweep.
EXAMPLES = (
    "knoblab estimate tier=high top_k=4 num_active_blocks=4 --results results/profile/shapes-vqa",
    "knoblab estimate vision_tokens=144 top_k=2 num_active_blocks=3 --estimator results/profile/shapes-vqa/analysis/estimator.json",
    "knoblab estimate tier=low top_k=1 num_active_blocks=2 output_tokens=16 --results results/profile/shapes-vqa --json",
)
ARGUMENTS = """\
Config groups: none (estimate reads no Hydra config; its key=value are knob settings)

Knob settings (key=value):
  top_k=K                 MoE experts per token, an integer >= 1 (when the sweep had it)
  num_active_blocks=N     active transformer blocks, 1..the model's blocks (when the sweep had it)
                          Any knob of the fitted sweep works the same way, a user adapter's own
                          names included: one the sweep varied is required, one it held
                          constant defaults to that value
  tier=NAME               a vision tier measured in the sweep (the reference model: low, medium,
                          high); it stands for the mean vision tokens the sweep's records show
  vision_tokens=T         target vision tokens instead of a tier (give one of the two); mapped to
                          the tokens the model sees by the sweep's mean actual/target ratio
  input_text_tokens=X     prompt text tokens (default: the sweep's mean)
  output_tokens=Y         generated tokens, the prefill's first one included (default: the sweep's mean)

Where the estimator comes from (one of the two):
  --estimator PATH        an estimator.json written by knoblab analyze (RESULTS/analysis/estimator.json)
  --results DIR           fit one now on a results directory of knoblab profile

Output:
  (default)               a table: predicted mean ms per stage (T_vision_total, T_LLM_prefill,
                          T_LLM_decode, T_total) with the band low..high
  --json                  one JSON object: value, low, high (per stage), inputs, band_source,
                          extrapolated, knobs

The band comes from the estimator's leave-configurations-out errors (``band: ...`` says which);
a setting outside the measured knob or token range prints an ``extrapolating:`` line per input.
"""


def _number(key: str, text: str, integer: bool) -> float | int:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v == v or v < (1 if integer else 0) or (integer and v != int(v)):
        raise ConfigError(key, text, "an integer >= 1" if integer else "a number >= 0")
    return int(v) if integer else v


def parse_argv(argv: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """(``key=value`` settings as text, flags); values are typed by :func:`typed_knobs`."""
    knobs: dict[str, str] = {}
    flags: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, val = a.partition("=")
        if name in FLAGS:
            if name == "--json":
                flags["json"] = True
            else:
                if not eq:
                    if i + 1 >= len(argv):
                        raise ConfigError(name, None, f"a path after {name}")
                    val = argv[i + 1]
                    i += 1
                flags[name[2:]] = val
        elif a.startswith("-"):
            raise UnknownKeyError("flag", a, FLAGS)
        elif not eq or not name:
            raise ConfigError("argument", a, "key=value (tier=high, top_k=4, output_tokens=8, ...)")
        else:
            knobs[name] = val
        i += 1
    if "tier" in knobs and "vision_tokens" in knobs:
        raise ConfigError(
            "vision_tokens", knobs["vision_tokens"], "unset when tier is given (one of the two)"
        )
    if "estimator" in flags and "results" in flags:
        raise ConfigError(
            "--results", flags["results"], "unset when --estimator is given (one of the two)"
        )
    return knobs, flags


def typed_knobs(est: Any, text: dict[str, str]) -> dict[str, Any]:
    """The settings typed for this estimator: numbers for tokens and numeric knobs.

    Raises:
        UnknownKeyError: a key the estimator does not know (the message lists them).
        ConfigError: a value that is not a number where one is needed.
    """
    allowed = est.allowed_keys()
    out: dict[str, Any] = {}
    for key, val in text.items():
        if key not in allowed:
            raise UnknownKeyError(key, val, allowed)
        kind = est.space.knobs.get(key, {}).get("kind") if key not in TOKEN_KEYS else "token"
        if key == "tier" or kind == "categorical":
            out[key] = val
        elif kind in ("k", "B"):
            out[key] = _number(key, val, integer=True)
        elif kind == "numeric":
            try:
                num = float(val)
            except ValueError:
                raise ConfigError(key, val, "a number") from None
            out[key] = int(num) if num.is_integer() else num
        else:
            out[key] = _number(key, val, integer=False)
    return out


def load_estimator(flags: dict[str, Any]) -> Any:
    from knoblab.analysis.estimator import LatencyEstimator, fit_estimator
    from knoblab.analysis.load import load_results

    if "estimator" in flags:
        return LatencyEstimator.load(flags["estimator"])
    if "results" in flags:
        return fit_estimator(load_results(flags["results"]))
    raise ConfigError(
        "--estimator",
        None,
        "an estimator.json written by knoblab analyze, or --results RESULTS_DIR",
    )


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from knoblab.help import render_help

        print(render_help(__doc__ or USAGE, None, EXAMPLES))
        print()
        print(ARGUMENTS)
        return 0
    text, flags = parse_argv(argv)
    est = load_estimator(flags)
    knobs = typed_knobs(est, text)
    pred = est.predict(**knobs)
    if flags.get("json"):
        out = {"value": pred.value, "low": pred.low, "high": pred.high, "inputs": pred.inputs}
        out |= {"band_source": pred.band_source, "extrapolated": pred.extrapolated, "knobs": knobs}
        print(json.dumps(out, indent=1, default=str))
        return 0
    print_prediction(est, pred, knobs)
    return 0


def print_prediction(est: Any, pred: Any, knobs: dict[str, Any]) -> None:
    """The prediction as a rich table, its inputs, band source and extrapolation flags."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    setting = " ".join(f"{k}={v}" for k, v in knobs.items())
    t = Table(title=f"Predicted latency (ms): {escape(setting)}", title_justify="left")
    for col in ("stage", "predicted", "band low", "band high"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for k, v in pred.value.items():
        t.add_row(k, f"{v:.3f}", f"{pred.low[k]:.3f}", f"{pred.high[k]:.3f}")
    con.print(t)
    i = pred.inputs
    con.print(
        f"inputs: vision tokens {i['vision_tokens']:.1f} ({est.vision_tokens}), text tokens "
        f"{i['input_text_tokens']:.1f}, output tokens {i['output_tokens']:.1f}",
        highlight=False,
    )
    con.print(f"[dim]band: {escape(pred.band_source)}[/dim]", highlight=False)
    for w in pred.extrapolated:
        con.print(f"[yellow]extrapolating:[/yellow] {escape(w)}", highlight=False)
