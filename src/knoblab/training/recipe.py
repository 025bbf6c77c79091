"""The reference recipe: train, evaluate and install the reference VLM's shipped weights.

``python -m knoblab.training.recipe --install`` runs ``knoblab train train=reference``
(shapes-vqa easy + hard, mixed by a curriculum, a quarter of the samples "read the
code" questions; seeded; under 30 minutes on a 2-core CPU), evaluates the result on the
profiling dataset (``conf/dataset/shapes_vqa.yaml``: easy variant, generation seed 0,
which no training sample comes from) at the knob settings the trade-off claims are
about, runs the default ``knoblab profile`` sweep for the decode claims, and, when every
claim holds, copies
``reference-v2.safetensors`` + ``reference-v2.json`` into the package
(``knoblab/models/reference/weights/``). ``reference-v2.recipe.json`` beside them
records the seed, the config, the final losses and the evaluation.

The claims (issue 6): high-tier accuracy beats low by at least 15 points; all blocks
beat half by at least 10; more experts per token never lose accuracy (within one
standard error); high tier, all blocks, full top-k answers at least 80% correctly
(each sample scored by its own metric: VQA accuracy, ANLS for a code). Issue 14 adds two
on the default ``knoblab profile`` sweep (records in ``<eval-out>/profile``;
``--no-sweep`` skips them): the answers span at least 4 distinct output-token counts,
and E1's decode-vs-output-tokens fit per (top_k, blocks) group has a median R² of at
least 0.8. The R² is a timing figure: on a busy machine it can fail where a quiet one
passes (``--force`` installs anyway).

Evaluation never writes into the installed package: its report goes to
``<eval-out>/<weights stem>.evaluation.json`` (``--eval-out``, default
``runs/reference-eval`` under the current directory). ``--evaluate`` leaves the weights and
their ``.recipe.json`` as they are (the shipped ones included); a training run also records
the evaluation in its own ``<out>/reference-v2.recipe.json``, the file ``--install`` ships.

Example:
    $ python -m knoblab.training.recipe --install                 # retrain the shipped weights
    $ python -m knoblab.training.recipe --evaluate runs/reference/reference-v2.safetensors
    $ python -m knoblab.training.recipe --evaluate shipped --samples 30 --eval-out /tmp/ev
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

EVAL_DATASET = {"size": 1000, "seed": 0, "variant": "easy"}


@dataclass(frozen=True)
class Setting:
    """One knob setting to evaluate."""

    tier: str
    top_k: int
    num_active_blocks: int

    @property
    def name(self) -> str:
        return f"tier={self.tier} top_k={self.top_k} blocks={self.num_active_blocks}"


def settings_for(model: nn.Module) -> list[Setting]:
    """Tiers x top_k x (half, all blocks): the grid ``bench_tradeoff`` sweeps."""
    cfg = model.cfg  # type: ignore[attr-defined]
    n, e = cfg.n_layers, cfg.num_experts
    out = [Setting(t, e, n) for t in cfg.tiers]
    out += [Setting("high", k, n) for k in range(1, e)]
    out += [Setting("high", e, max(1, n // 2))]
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    settings: Sequence[Setting] | None = None,
    num_samples: int = 300,
    batch_size: int = 50,
) -> dict[str, float]:
    """Accuracy (in %) of ``model`` on the first ``num_samples`` of the eval dataset per setting.

    Each sample is scored with its own metric (``metadata["metric"]``: ANLS for "read the
    code" questions), else the dataset's (VQA accuracy), as the sweep runner scores it.
    """
    from knoblab.data.sample import sample_metric
    from knoblab.data.scoring import score
    from knoblab.data.shapes import ShapesVQA
    from knoblab.models.reference.batch import collate

    ds = ShapesVQA(EVAL_DATASET["size"], seed=EVAL_DATASET["seed"], variant=EVAL_DATASET["variant"])
    samples = [ds[i] for i in range(min(num_samples, len(ds)))]
    model.eval()
    out: dict[str, float] = {}
    for st in settings or settings_for(model):
        model.set_knobs(top_k=st.top_k, num_active_blocks=st.num_active_blocks)  # type: ignore[operator]
        acc = 0.0
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            preds = model.predict(collate(chunk, tier=st.tier, cfg=model.cfg))  # type: ignore[operator]
            acc += sum(
                score(sample_metric(s, ds.metric), p, s.answers)
                for p, s in zip(preds, chunk, strict=True)
            )
        out[st.name] = 100.0 * acc / len(samples)
    cfg = model.cfg  # type: ignore[attr-defined]
    model.set_knobs(top_k=cfg.top_k, num_active_blocks=cfg.n_layers)  # type: ignore[operator]
    return out


def check_claims(
    acc: dict[str, float], model: nn.Module, num_samples: int
) -> list[tuple[str, float, bool]]:
    """The trade-off claims as ``(claim, measured value, holds)``."""
    cfg = model.cfg  # type: ignore[attr-defined]
    n, e = cfg.n_layers, cfg.num_experts
    best = acc[Setting("high", e, n).name]
    se = 100.0 * math.sqrt(0.25 / num_samples)  # worst-case standard error of one accuracy
    ks = [acc[Setting("high", k, n).name] for k in range(1, e + 1)]
    worst_drop = max((a - b for a, b in zip(ks, ks[1:], strict=False)), default=0.0)
    half = acc[Setting("high", e, max(1, n // 2)).name]
    low = acc[Setting("low", e, n).name]
    return [
        ("high tier - low tier >= 15 points", best - low, best - low >= 15),
        ("all blocks - half blocks >= 10 points", best - half, best - half >= 10),
        ("largest accuracy drop from top_k to top_k+1 <= one SE", worst_drop, worst_drop <= se),
        ("high tier, all blocks, full top_k >= 80%", best, best >= 80),
    ]


#: The decode claims (issue 14): on the default ``knoblab profile`` sweep the answers
#: span at least this many distinct output-token counts ...
MIN_OUTPUT_TOKEN_COUNTS = 4
#: ... and the E1 decode-vs-output-tokens fit per (top_k, blocks) group has this median R².
MIN_DECODE_R2 = 0.8


def decode_sweep(
    weights: Path, out_dir: Path, overrides: Sequence[str] = (), timeout: float = 1800
) -> Path:
    """Run ``knoblab profile`` (its defaults, plus ``overrides``) on ``weights``, as a user
    runs it (a child process), with records under ``out_dir``; returns the task's folder.

    Raises:
        RuntimeError: the sweep failed (its last error line is in the message).
    """
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "knoblab.cli",
        "profile",
        f"model.weights={Path(weights).resolve()}",
        f"run.output_dir={out_dir}",
        "run.progress=false",
        *overrides,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"knoblab profile failed (exit {proc.returncode}): {last}")
    return Path(out_dir) / "shapes-vqa"


def decode_claims(results_dir: Path) -> list[tuple[str, float, bool]]:
    """The decode claims of a ``knoblab profile`` sweep of shapes-vqa, as ``(claim, value, holds)``.

    Distinct ``output_tokens`` over every answered sample of every configuration, and the
    median R² of E1's decode fit (``knoblab.analysis.stages.scaling_fits``) over the
    (top_k, num_active_blocks) groups, the pooled ``all`` fit left out.
    """
    from knoblab.analysis.load import load_results
    from knoblab.analysis.stages import scaling_fits

    res = load_results(results_dir)
    counts = int(res.samples["output_tokens"].dropna().nunique())
    fits = scaling_fits(res)
    decode = fits[(fits["stage"] == "decode") & (fits["group"] != "all")]
    r2 = float(decode["r2"].median()) if len(decode) else math.nan
    return [
        (
            f"distinct output-token counts on the profile sweep >= {MIN_OUTPUT_TOKEN_COUNTS}",
            float(counts),
            counts >= MIN_OUTPUT_TOKEN_COUNTS,
        ),
        (
            f"median R^2 of the decode fit per (top_k, blocks) group >= {MIN_DECODE_R2}",
            r2,
            r2 >= MIN_DECODE_R2,
        ),
    ]


def report(acc: dict[str, float], claims: list[tuple[str, float, bool]]) -> str:
    """A plain-text table of accuracies and claims."""
    lines = [f"{'setting':<40} accuracy %"] + [f"{k:<40} {v:6.1f}" for k, v in acc.items()]
    lines += [""] + [f"[{'ok' if ok else 'FAIL'}] {c}: {v:.3g}" for c, v, ok in claims]
    return "\n".join(lines)


def install(weights: Path) -> Path:
    """Copy ``weights`` (+ its ``.json`` and ``.recipe.json``) into the package weights dir, atomically."""
    from knoblab.models.reference.weights import shipped_weights_path

    target = shipped_weights_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    for src, dst in (
        (weights, target),
        (weights.with_suffix(".json"), target.with_suffix(".json")),
        (weights.with_suffix(".recipe.json"), target.with_suffix(".recipe.json")),
    ):
        if src.is_file():
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
    return target


def _merge_json(path: Path, update: dict[str, object]) -> Path:
    from knoblab.atomic import atomic_write

    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(update)
    return atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def check_eval_out(out_dir: Path) -> None:
    """``ConfigError`` when ``out_dir`` lies inside the installed knoblab package."""
    import knoblab
    from knoblab.errors import ConfigError

    package = Path(knoblab.__file__).resolve().parent
    if out_dir.resolve().is_relative_to(package):
        raise ConfigError("--eval-out", str(out_dir), f"a folder outside the package ({package})")


def write_evaluation(weights: Path, evaluation: dict[str, object], out_dir: Path) -> Path:
    """Write ``<out_dir>/<weights stem>.evaluation.json``: the weights' path, their recipe
    (when one lies beside them) and ``evaluation``. Nothing is written beside the weights.
    """
    from knoblab.atomic import atomic_write, ensure_dir

    check_eval_out(out_dir)
    side = weights.with_suffix(".recipe.json")
    report: dict[str, object] = {"weights": str(weights.resolve())}
    if side.is_file():
        report["recipe"] = json.loads(side.read_text())
    report.update(evaluation)
    target = ensure_dir(out_dir, "--eval-out") / f"{weights.stem}.evaluation.json"
    return atomic_write(target, json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m knoblab.training.recipe", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="runs/reference", help="output dir of the training run")
    parser.add_argument(
        "--install",
        action="store_true",
        help="copy the weights into the package when the claims hold",
    )
    parser.add_argument("--force", action="store_true", help="install even when a claim fails")
    parser.add_argument(
        "--evaluate",
        metavar="WEIGHTS",
        help="only evaluate these weights (.safetensors; 'shipped' = the installed ones)",
    )
    parser.add_argument(
        "--eval-out",
        default="runs/reference-eval",
        metavar="DIR",
        help="folder for the evaluation report (never the installed package)",
    )
    parser.add_argument("--samples", type=int, default=300, help="evaluation samples per setting")
    parser.add_argument(
        "--no-sweep",
        action="store_true",
        help="skip the decode claims' default `knoblab profile` sweep (about a minute)",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for knoblab train")
    args = parser.parse_args(argv)

    from knoblab.models.reference.weights import WEIGHTS_NAME, load_reference

    check_eval_out(Path(args.eval_out))  # before any work
    if args.evaluate == "shipped":
        from knoblab.models.reference.weights import shipped_weights_path

        weights = shipped_weights_path()
    elif args.evaluate:
        weights = Path(args.evaluate)
    else:
        from knoblab.console import log_to_stderr
        from knoblab.hydra_utils import compose
        from knoblab.training.runner import run_training

        log_to_stderr()
        out = Path(args.out)
        weights = out / f"{WEIGHTS_NAME}.safetensors"
        overrides = [
            "train=reference",
            f"train.output_dir={out}",
            f"train.export={weights}",
            *args.overrides,
        ]
        run_training(compose("train", overrides))
    torch.set_num_threads(1)
    model = load_reference(weights)
    acc = evaluate(model, num_samples=args.samples)
    claims = check_claims(acc, model, args.samples)
    if not args.no_sweep:
        sweep = decode_sweep(weights, Path(args.eval_out) / "profile")
        claims += decode_claims(sweep)
    print(report(acc, claims))
    evaluation = {
        "evaluation": {"dataset": EVAL_DATASET, "samples": args.samples, "accuracy": acc},
        "claims": [{"claim": c, "value": v, "holds": ok} for c, v, ok in claims],
    }
    out_file = write_evaluation(weights, evaluation, Path(args.eval_out))
    print(f"evaluation: {out_file}")
    if not args.evaluate:  # the training run's own recipe.json (what --install ships)
        _merge_json(weights.with_suffix(".recipe.json"), evaluation)
    holds = all(ok for _, _, ok in claims)
    if args.install and (holds or args.force):
        print(f"installed: {install(weights)}")
    elif args.install:
        print("not installed: a claim fails (use --force to install anyway)")
    return 0 if holds else 1


def _cli() -> int:
    """``main`` with the CLI's error contract: a bad override is one line, exit 2."""
    from knoblab.errors import KnobLabError

    try:
        return main()
    except KnobLabError as exc:
        print(f"python -m knoblab.training.recipe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_cli())
