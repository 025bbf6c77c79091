"""``knoblab deep-profile``: Stage 2, the Stage-1 workload under torch.profiler (or nsys).

Library: ``knoblab.profiling.deep.deep_profile``. See docs/profiling.md.

Example:
    knoblab deep-profile deep.mode=full deep.samples=all dataset.sampling.num_samples_per_epoch=20 \\
        'deep.configurations=[{tier: high, top_k: 4, num_active_blocks: 4}]'
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from rich.console import Console

    from knoblab.hydra_utils import compose, print_help, wants_help
    from knoblab.profiling.deep import deep_profile, maybe_wrap_in_nsys

    if wants_help(argv):
        return print_help(__doc__ or "", "deep_profile", argv)
    cfg = compose("deep_profile", argv)
    code = maybe_wrap_in_nsys(cfg, argv)
    if code is not None:
        return code
    index = deep_profile(cfg)
    console = Console()
    console.print(
        f"{len(index['configurations'])} configuration(s) profiled ({index['mode']} mode, "
        f"{len(index['profiled_sample_ids'])} sample(s) each); traces and operator tables in "
        f"[bold]{index['out_dir']}[/bold]"
    )
    return 0
