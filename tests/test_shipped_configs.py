"""Every shipped config composes: each primary config, and each option of each group it uses.

torchtune's rule: a config that ships is a config that is tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from knoblab.hydra_utils import compose

CONF = Path(__file__).resolve().parents[1] / "src" / "knoblab" / "conf"
PRIMARIES = sorted(p.stem for p in CONF.glob("*.yaml"))


def _group_defaults(primary: str) -> list[tuple[str, str | None]]:
    """(group, package) pairs named in a primary config's defaults list."""
    doc = yaml.safe_load((CONF / f"{primary}.yaml").read_text()) or {}
    out = []
    for entry in doc.get("defaults", []):
        if isinstance(entry, dict):
            for key in entry:
                key = key.removeprefix("override ")
                group, _, package = key.partition("@")
                out.append((group, package or None))
    return out


CASES = [
    (primary, group, package, option.stem)
    for primary in PRIMARIES
    for group, package in _group_defaults(primary)
    if (CONF / group).is_dir()
    for option in sorted((CONF / group).glob("*.yaml"))
]


@pytest.mark.parametrize("primary", PRIMARIES)
def test_primary_config_composes(primary: str) -> None:
    cfg = compose(primary, [])
    assert cfg is not None


@pytest.mark.parametrize(("primary", "group", "package", "option"), CASES)
def test_every_group_option_composes(
    primary: str, group: str, package: str | None, option: str
) -> None:
    key = f"{group}@{package}" if package else group
    cfg = compose(primary, [f"{key}={option}"])
    assert cfg is not None
