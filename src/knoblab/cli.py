"""The ``knoblab`` command: a thin shell over the library.

``knoblab <command> [hydra overrides] [flags]``. Every command is a module in
``knoblab.commands`` with ``main(argv) -> int``; its work is a library function a
user can call. Errors caused by input print one line and exit with code 2; a
traceback appears only with ``--debug`` or ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import importlib
import os
import sys

from knoblab.errors import KnobLabError

COMMANDS: dict[str, tuple[str, str]] = {
    "profile": (
        "knoblab.commands.profile",
        "accuracy x stage-latency sweep over knob configurations",
    ),
    "deep-profile": (
        "knoblab.commands.deep_profile",
        "torch.profiler / nsys traces of chosen configurations",
    ),
    "analyze": (
        "knoblab.commands.analyze",
        "E1 stages, E2 Pareto fronts, E3 estimator, report.html",
    ),
    "estimate": ("knoblab.commands.estimate", "predict latency of an unmeasured configuration"),
    "train": ("knoblab.commands.train", "Lightning training (reference recipe by default)"),
    "plan": ("knoblab.commands.plan", "preview a dataset sampling plan"),
    "upgrade-checkpoint": (
        "knoblab.commands.upgrade_checkpoint",
        "upgrade a checkpoint to the current format",
    ),
    "export-data": ("knoblab.commands.export_data", "write shapes-vqa samples as JSONL + images"),
}


def _usage() -> str:
    lines = [
        "usage: knoblab <command> [overrides ...] [--debug]",
        "       knoblab <command> --help     (its config groups, examples and config)",
        "       knoblab --version",
        "",
        "commands:",
    ]
    lines += [f"  {name:<20} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "",
        "Overrides use Hydra syntax: dataset.sampling.num_epochs=2, dataset/sampling@dataset.sampling=random",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from knoblab.help import version

        print(f"knoblab {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from knoblab.errors import closest

        close = closest(name, COMMANDS)
        hint = f"; did you mean '{close}'?" if close else ""
        print(
            f"knoblab: error: unknown command {name!r}: allowed are {', '.join(COMMANDS)}{hint}",
            file=sys.stderr,
        )
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except KnobLabError as exc:
        if debug:
            raise
        print(f"knoblab {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"knoblab {name}: interrupted; finished results are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `knoblab profile --help | head`: the reader left, no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
