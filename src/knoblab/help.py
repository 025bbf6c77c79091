"""What ``--help`` teaches: the version, a command's config groups and its examples.

Config groups are discovered, not listed by hand: the ``defaults`` list of the
command's primary config (``knoblab/conf/<name>.yaml``) names each group and its default
option, and the group's folder (``knoblab/conf/<group>/*.yaml``) holds its options; the
first comment line of an option's file is its description. A new YAML file in a group
folder shows up in every command's help that uses the group.

Example:
    >>> [g.override for g in config_groups("plan")]
    ['dataset', 'dataset/sampling@dataset.sampling']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

CONFIG_PACKAGE = "knoblab.conf"


def version() -> str:
    """knoblab's installed version (package metadata), else the source tree's ``__version__``."""
    from importlib import metadata

    try:
        return metadata.version("knoblab")
    except metadata.PackageNotFoundError:
        from knoblab import __version__

        return __version__


@dataclass(frozen=True)
class ConfigGroup:
    """One config group of a command.

    Attributes:
        override: what the user types before ``=`` (``model``, ``dataset/sampling@dataset.sampling``).
        group: the group's folder under ``knoblab/conf`` (``dataset/sampling``).
        default: the option the command uses unless told otherwise.
        options: ``(name, description)`` of every ``<group>/<name>.yaml``, sorted by name.
    """

    override: str
    group: str
    default: str | None
    options: tuple[tuple[str, str], ...]


def _conf() -> Any:
    return resources.files(CONFIG_PACKAGE)


def _description(text: str) -> str:
    """The first comment line of a YAML file, without the ``#``."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# @package"):  # Hydra's package directive, not a description
            continue
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line:
            break
    return ""


def group_options(group: str) -> tuple[tuple[str, str], ...]:
    """``(option, description)`` of every ``knoblab/conf/<group>/*.yaml``."""
    folder = _conf()
    for part in group.split("/"):
        folder = folder / part
    if not folder.is_dir():
        return ()
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    return tuple((f.name[: -len(".yaml")], _description(f.read_text("utf-8"))) for f in files)


def config_groups(config_name: str) -> list[ConfigGroup]:
    """The config groups of ``knoblab/conf/<config_name>.yaml``, in its defaults-list order."""
    import yaml

    path = _conf() / f"{config_name}.yaml"
    if not path.is_file():
        return []
    defaults = (yaml.safe_load(path.read_text("utf-8")) or {}).get("defaults") or []
    out = []
    for entry in defaults:
        if not isinstance(entry, dict):  # "_self_"
            continue
        for key, default in entry.items():
            key = str(key).removeprefix("override ")
            group = key.partition("@")[0]
            out.append(ConfigGroup(key, group, default, group_options(group)))
    return out


def render_groups(config_name: str, width: int = 100) -> str:
    """The "Config groups" section of a command's help (empty string without groups)."""
    groups = config_groups(config_name)
    if not groups:
        return "Config groups: none (every setting is a key=value below)"
    lines = ["Config groups (GROUP=OPTION picks one file of knoblab/conf/GROUP/; * = default):"]
    for g in groups:
        lines.append(f"  {g.override}=")
        pad = max(len(name) for name, _ in g.options) + 2 if g.options else 4
        for name, desc in g.options:
            mark = "*" if name == g.default else " "
            text = f"    {name:<{pad}}{mark} {desc}"
            lines.append(text if len(text) <= width else text[: width - 3].rstrip() + "...")
    return "\n".join(lines)


def render_examples(examples: Sequence[str]) -> str:
    """The "Examples" section: one command line each (tests run every one of them)."""
    if not examples:
        return ""
    return "\n".join(["Examples:", *(f"  {e}" for e in examples)])


def render_help(usage: str, config_name: str | None, examples: Sequence[str]) -> str:
    """Usage, then examples, then config groups: the text before the composed config."""
    parts = [usage.strip(), render_examples(examples)]
    if config_name:
        parts.append(render_groups(config_name))
    return "\n\n".join(p for p in parts if p)
