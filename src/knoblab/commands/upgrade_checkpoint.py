"""``knoblab upgrade-checkpoint PATH [PATH ...]``: upgrade checkpoints to the current format in place.

Each file is copied to ``PATH.bak`` first; the upgraded checkpoint is then written
atomically. A checkpoint already in the current format is left untouched.
"""

from __future__ import annotations

import argparse

from knoblab.training.checkpoint import upgrade_checkpoint
from knoblab.training.migrations import CURRENT_FORMAT

#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one.
EXAMPLES = (
    "knoblab upgrade-checkpoint runs/train/checkpoints/last.ckpt",
    "knoblab upgrade-checkpoint runs/a/checkpoints/last.ckpt runs/b/checkpoints/last.ckpt",
    "knoblab upgrade-checkpoint runs/train/checkpoints/*.ckpt   # the shell expands the glob",
)


def main(argv: list[str]) -> int:
    from knoblab.help import render_examples

    parser = argparse.ArgumentParser(
        prog="knoblab upgrade-checkpoint",
        description=__doc__,
        epilog=render_examples(EXAMPLES) + "\n\nConfig groups: none (takes checkpoint paths).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a .ckpt written by knoblab train")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): an exit code, like the others
        return int(exc.code or 0)
    for path in args.paths:
        old = upgrade_checkpoint(path)
        if old == CURRENT_FORMAT:
            print(f"{path}: already format {CURRENT_FORMAT}, unchanged")
        else:
            print(f"{path}: format {old} -> {CURRENT_FORMAT} (original kept as {path}.bak)")
    return 0
