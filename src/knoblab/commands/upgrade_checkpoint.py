"""``knoblab upgrade-checkpoint PATH [PATH ...]``: upgrade checkpoints to the current format in place.

Each file is copied to ``PATH.bak`` first; the upgraded checkpoint is then written
atomically. A checkpoint already in the current format is left untouched.
"""

from __future__ import annotations

import argparse

from knoblab.training.checkpoint import upgrade_checkpoint
from knoblab.training.migrations import CURRENT_FORMAT


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="knoblab upgrade-checkpoint", description=__doc__.splitlines()[0]
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a .ckpt written by knoblab train")
    args = parser.parse_args(argv)
    for path in args.paths:
        old = upgrade_checkpoint(path)
        if old == CURRENT_FORMAT:
            print(f"{path}: already format {CURRENT_FORMAT}, unchanged")
        else:
            print(f"{path}: format {old} -> {CURRENT_FORMAT} (original kept as {path}.bak)")
    return 0
