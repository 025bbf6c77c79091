"""``knoblab analyze``: E1 stage decomposition, E2 Pareto fronts, E3 estimator and the report.

    knoblab analyze RESULTS_DIR [--out DIR] [--budget-ms 40] [--percentile p95]
                    [--vision-tokens actual|target] [--deep PATH] [key=value ...] [--debug]

``key=value`` overrides ``conf/analyze.yaml`` (results_dir, out, percentile, budget_ms,
vision_tokens, deep, run.logger, tracking.*); flags win over keys. ``--deep`` names the
``knoblab deep-profile`` output (default: found beside RESULTS_DIR; ``deep=false`` skips it)
for the operators section. Prints the front, the estimator's held-out figures, the budget
answer and the records left out; writes ``report.html``, ``analysis.md``,
``analysis.json``, ``estimator.json`` and PNGs to ``--out`` (default
``RESULTS_DIR/analysis``). The work is ``knoblab.analysis.analyze.analyze``.

``run.logger=tensorboard|mlflow|wandb`` logs the analysis (estimator figures, fronts,
the report files) into the sweep's run: the one named by the ``tracking.json`` that
``knoblab profile run.logger=...`` left in RESULTS_DIR or one folder below it.
"""

from __future__ import annotations

from typing import Any

from knoblab.errors import ConfigError, DataError

CONFIG_NAME = "analyze"
FLAGS = {
    "--out": "out",
    "--budget-ms": "budget_ms",
    "--percentile": "percentile",
    "--vision-tokens": "vision_tokens",
    "--deep": "deep",
}
USAGE = __doc__.split("\n\n")[1].strip() if __doc__ else ""
#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one on a tiny sweep.
EXAMPLES = (
    "knoblab analyze results/profile/shapes-vqa",
    "knoblab analyze results/profile/shapes-vqa --budget-ms 40 --percentile p99",
    "knoblab analyze results/profile --out reports/all vision_tokens=target run.logger=tensorboard",
)


def parse_argv(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(settings from flags and the positional RESULTS_DIR, Hydra overrides)."""
    flags: dict[str, Any] = {}
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, val = a.partition("=")
        if name in FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(a, None, f"a value after {a}")
                val = argv[i + 1]
                i += 1
            flags[FLAGS[name]] = val
        elif a.startswith("--"):
            from knoblab.errors import closest

            close = closest(name, [*FLAGS, "--debug", "--help"])
            hint = f"did you mean {close}?" if close else None
            raise ConfigError("flag", a, ", ".join([*FLAGS, "--debug"]), hint)
        elif eq:
            overrides.append(a)
        elif "results_dir" not in flags:
            flags["results_dir"] = a
        else:
            raise ConfigError(
                "RESULTS_DIR",
                a,
                "a single results directory",
                f"already given {flags['results_dir']}",
            )
        i += 1
    if "budget_ms" in flags:
        try:
            flags["budget_ms"] = float(flags["budget_ms"])
        except ValueError:
            raise ConfigError(
                "--budget-ms", flags["budget_ms"], "a positive number of milliseconds"
            ) from None
    return flags, overrides


def _check_out(cfg: dict[str, Any]) -> None:
    """One line (``DataError``) when the report folder is a file, before any work."""
    from pathlib import Path

    from knoblab.atomic import ensure_dir

    if cfg.get("out") is not None:
        ensure_dir(str(cfg["out"]), "out")
        return
    default = Path(str(cfg["results_dir"])) / "analysis"
    if default.exists() and not default.is_dir():
        raise DataError(f"out={str(default)!r} (the default) is a file: allowed is a directory")


def main(argv: list[str]) -> int:
    from knoblab.config import plain
    from knoblab.hydra_utils import HELP_FLAGS, compose, print_help, wants_help

    if wants_help(argv):
        flags, overrides = parse_argv([a for a in argv if a not in HELP_FLAGS])
        return print_help(__doc__ or USAGE, CONFIG_NAME, overrides, flags, examples=EXAMPLES)
    flags, overrides = parse_argv(argv)
    cfg = plain(compose(CONFIG_NAME, overrides))
    cfg.update(flags)
    if not cfg.get("results_dir"):
        raise ConfigError(
            "results_dir",
            None,
            "a results directory of knoblab profile (knoblab analyze RESULTS_DIR)",
        )
    budget = cfg.get("budget_ms")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))):
        raise ConfigError("budget_ms", budget, "a positive number of milliseconds")
    from knoblab.profiling.tracking import require

    logger = str((cfg.get("run") or {}).get("logger") or "none")
    require(logger)  # before the work: a missing package is one line naming the extra

    _check_out(cfg)
    from knoblab.analysis.analyze import analyze

    a = analyze(
        str(cfg["results_dir"]),
        cfg.get("out"),
        percentile=str(cfg["percentile"]),
        budget_ms=budget,
        vision_tokens=str(cfg["vision_tokens"]),
        deep=cfg.get("deep"),
    )
    print_summary(a)
    if logger != "none":
        log_to_tracker(a, cfg, logger)
    return 0


def log_to_tracker(a: Any, cfg: dict[str, Any], logger: str) -> list[str]:
    """Log the analysis into the sweep's run(s) (``tracking.json``); prints and returns the ids.

    Metrics: the estimator's held-out figures (``estimator/<level>/<target>/MAPE``, ...)
    and the budget answer; tables: each task's front; files: the report and its data.
    """
    from knoblab.profiling.tracking import log_analysis

    metrics: dict[str, float] = {}
    if a.evaluation is not None:
        for _, r in a.evaluation.metrics.iterrows():
            for m in ("MAPE", "RMSPE", "within_5", "within_10"):
                metrics[f"estimator/{r['level']}/{r['target']}/{m}"] = float(r[m])
    if a.budget is not None and a.budget.latency_ms is not None:
        metrics["budget/latency_ms"] = float(a.budget.latency_ms)
        if a.budget.accuracy is not None:
            metrics["budget/accuracy"] = float(a.budget.accuracy)
    cols = ["label", "accuracy", "latency", "on_front"]
    tables = {
        f"front_{task}": [
            {c: (bool(v) if c == "on_front" else v) for c, v in r.items()}
            for r in front[[c for c in cols if c in front]].to_dict("records")
        ]
        for task, front in a.fronts.items()
    }
    ids = log_analysis(
        str(cfg["results_dir"]),
        logger,
        cfg.get("tracking"),
        metrics,
        tables,
        list(a.files.values()),
    )
    print(f"analysis logged to {logger}: run {', '.join(ids)}")
    return ids


def print_summary(a: Any) -> None:
    """Front, estimator figures, budget answer, left-out records and written files (rich)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from knoblab.analysis.uncertainty import ci_cell

    con = Console()
    p = a.percentile
    for task, front in a.fronts.items():
        t = Table(
            title=f"{task}: configurations by T_total {p} (* = Pareto-optimal, ~ = tied with "
            "the front within noise; \\[lo, hi] = confidence interval, n = samples)",
            title_justify="left",
        )
        cols = ("", "configuration", "accuracy", f"T_total {p} ms", "n", "dominant stage")
        for col in cols:
            t.add_column(
                col, justify="left" if col in ("", "configuration", "dominant stage") else "right"
            )
        dom = dict(zip(a.shares["label"], a.shares["dominant"], strict=True))
        for _, r in front.iterrows():
            t.add_row(
                "*" if r["on_front"] else ("~" if r.get("tied_with_front", False) else ""),
                escape(str(r["label"])),
                escape(ci_cell(r["accuracy"], r.get("accuracy_lo"), r.get("accuracy_hi"), 3)),
                escape(ci_cell(r["latency"], r.get("latency_lo"), r.get("latency_hi"), 2)),
                str(int(r["num_valid_samples"])),
                dom.get(r["label"], ""),
            )
        con.print(t)
    if a.evaluation is not None:
        t = Table(title=f"Latency estimator, {a.evaluation.method}", title_justify="left")
        for col in ("level", "target", "MAPE %", "RMSPE %", "within ±5 %", "within ±10 %", "n"):
            t.add_column(col, justify="left" if col in ("level", "target") else "right")
        for _, r in a.evaluation.metrics.iterrows():
            t.add_row(
                r["level"],
                r["target"],
                f"{r['MAPE']:.2f}",
                f"{r['RMSPE']:.2f}",
                f"{r['within_5']:.1f}",
                f"{r['within_10']:.1f}",
                str(int(r["n"])),
            )
        con.print(t)
    if a.budget is not None:
        con.print(
            f"[bold]Budget T_total {p} <= {a.budget.budget_ms:g} ms:[/bold] {escape(a.budget.message())}",
            highlight=False,
        )
    for s in a.results.skipped:
        con.print(
            f"[yellow]left out[/yellow] {escape(s.name)}: {escape(s.reason)}", highlight=False
        )
    if a.operators is not None:
        srcs = ", ".join(str(s) for s in a.operators.sources)
        con.print(
            f"operators: top {a.operators.top} per configuration and stage from {escape(srcs)}",
            highlight=False,
        )
    for n in a.notes:
        con.print(f"[dim]note: {escape(n)}[/dim]", highlight=False)
    if a.files:
        con.print(
            f"report: {escape(str(a.files['report.html']))}  (also analysis.md, analysis.json, estimator.json, PNGs)",
            highlight=False,
        )
