"""``knoblab deep-profile``: Stage 2, the Stage-1 workload under torch.profiler (or nsys).

Library: ``knoblab.profiling.deep.deep_profile``. See docs/profiling.md. ``-m`` /
``--multirun`` sweeps comma-separated override values with Hydra's launcher; each job
writes to ``<deep.output_dir>/job<N>/`` (N: Hydra's job number) unless the sweep sets
``deep.output_dir`` itself, so jobs do not overwrite each other's traces. Traces are
gzip'd (``deep.gzip``) and stop at ``deep.max_trace_mb``; a progress bar counts
configurations x samples.

    knoblab deep-profile [GROUP=OPTION ...] [key=value ...] [-m] [--debug]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CONFIG_NAME = "deep_profile"
#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one (tiny settings).
EXAMPLES = (
    "knoblab deep-profile deep.mode=full deep.samples=all dataset.sampling.num_samples_per_epoch=20 deep.max_trace_mb=50",
    "knoblab deep-profile 'deep.configurations=[{tier: high, top_k: 4, num_active_blocks: 4}]'",
    "knoblab deep-profile design=boundary deep.gzip=false deep.output_dir=results/deep_boundary",
)


def run(cfg: Any, argv: Sequence[str] = ()) -> int:
    """Profile per a composed config (under nsys when ``deep.nsys`` asks); the exit code."""
    from rich.console import Console

    from knoblab.atomic import ensure_dir
    from knoblab.profiling.deep import deep_profile, maybe_wrap_in_nsys

    ensure_dir(str(cfg.deep.output_dir), "deep.output_dir")  # a file there: one line
    code = maybe_wrap_in_nsys(cfg, argv)
    if code is not None:
        return code
    index = deep_profile(cfg)
    traces = index["traces"]
    skipped = traces["skipped_configurations"]
    Console().print(
        f"{len(index['configurations'])} configuration(s) profiled ({index['mode']} mode, "
        f"{len(index['profiled_sample_ids'])} sample(s) each); traces ({traces['written_mb']:.1f} MB"
        f"{', gzip' if traces['gzip'] else ''}"
        f"{f', {len(skipped)} skipped at deep.max_trace_mb' if skipped else ''}) "
        f"and operator tables in [bold]{index['out_dir']}[/bold]"
    )
    return 0


def _job(cfg: Any, own_folder: bool) -> None:
    """One point of a ``-m`` sweep: its own output folder, its own overrides for nsys."""
    from hydra.core.hydra_config import HydraConfig

    from knoblab.errors import KnobLabError

    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    if own_folder:
        out = f"{cfg.deep.output_dir}/job{hc.job.num}"
        cfg.deep.output_dir = out
        overrides.append(f"deep.output_dir={out}")  # the last one wins (nsys rerun)
    code = run(cfg, overrides)
    if code:
        raise KnobLabError(f"deep-profile job {hc.job.num} under nsys exited with code {code}")


def main(argv: list[str]) -> int:
    from knoblab.hydra_utils import (
        compose,
        print_config,
        print_help,
        run_multirun,
        split_hydra_flags,
        split_multirun,
        wants_help,
    )

    if wants_help(argv):
        return print_help(__doc__ or "", CONFIG_NAME, argv, examples=EXAMPLES)
    flags, rest = split_hydra_flags(argv)  # --config-dir/-cd, --config-name/-cn, --cfg job
    multirun, rest = split_multirun(rest)
    if flags.validate:
        from knoblab.commands.validate import validate_deep_profile
        from knoblab.hydra_utils import run_validate

        return run_validate(CONFIG_NAME, validate_deep_profile, flags, rest)
    if flags.cfg == "job":
        return print_config(compose(flags.name(CONFIG_NAME), rest, flags.config_dir))
    if multirun:
        from knoblab._compat.hydra import swept_keys
        from knoblab.hydra_utils import normalize_overrides

        own = "deep.output_dir" not in swept_keys(normalize_overrides(rest))
        job = lambda cfg: _job(cfg, own)  # noqa: E731
        return run_multirun(CONFIG_NAME, job, rest, "knoblab deep-profile", flags)
    return run(compose(flags.name(CONFIG_NAME), rest, flags.config_dir), rest)
