"""The README stays true: its commands compose, its links resolve, it indexes every doc.

Each ``knoblab <command> ...`` line of the README's bash blocks (``torchrun ... -m
knoblab.cli <command> ...`` included) is composed with its overrides exactly as the CLI
does, so a renamed key, config group or option breaks this test instead of a user's
first try. Commands without a Hydra config (analyze, estimate, upgrade-checkpoint) are
checked to exist in the dispatcher.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from knoblab.cli import COMMANDS
from knoblab.hydra_utils import compose

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGS = {
    "profile": "profile",
    "deep-profile": "deep_profile",
    "plan": "plan",
    "export-data": "export_data",
    "train": "train",
}


def _commands() -> list[list[str]]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("torchrun"):
                line = "knoblab " + line.split("knoblab.cli", 1)[1]
            if line.startswith("knoblab "):
                out.append(shlex.split(line)[1:])
    return out


def _first_point(args: list[str]) -> list[str]:
    """The overrides of a multirun's first job (Hydra launcher keys left out)."""
    multirun = "-m" in args or "--multirun" in args
    out = []
    for a in args:
        if a in ("-m", "--multirun") or a.startswith(("hydra/", "hydra.")):
            continue
        key, sep, value = a.partition("=")
        if multirun and "],[" in value:
            value = value.split("],[")[0] + "]"
        elif multirun and "," in value and not value.startswith(("[", "{")):
            value = value.split(",")[0]
        out.append(f"{key}{sep}{value}")
    return out


COMMAND_LINES = _commands()


def test_readme_quotes_every_command() -> None:
    quoted = {args[0] for args in COMMAND_LINES}
    assert quoted == set(COMMANDS), f"README lacks {set(COMMANDS) - quoted}"


@pytest.mark.parametrize("args", COMMAND_LINES, ids=[" ".join(a)[:80] for a in COMMAND_LINES])
def test_readme_command_composes(args: list[str]) -> None:
    assert args[0] in COMMANDS, f"knoblab {args[0]} is not a command"
    if args[0] in CONFIGS:
        compose(CONFIGS[args[0]], _first_point(args[1:]))


def test_readme_links_resolve_and_index_every_doc() -> None:
    links = set(re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)\)", README))
    assert links, "README links to its docs"
    for link in links:
        assert (ROOT / link).is_file(), f"README links to missing {link}"
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs <= links, f"README's docs index lacks {docs - links}"


def test_readme_anchors_exist() -> None:
    def slug(heading: str) -> str:  # GitHub's rule: lower case, drop punctuation, spaces -> '-'
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", README, re.M)}
    for target in re.findall(r"\]\(#([^)]+)\)", README):
        assert target in anchors, f"README links to a missing section #{target}"
