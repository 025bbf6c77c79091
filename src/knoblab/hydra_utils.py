"""Hydra composition for every knoblab command, with one-line errors.

Every command composes its primary config from ``knoblab/conf`` with Hydra's
Compose API and the user's overrides (``dataset.sampling.num_epochs=2``,
``dataset/sampling@dataset.sampling=random``). Composition errors — an unknown key,
an unknown preset, a malformed override — become a ``ConfigError`` that names the key,
the value and what is allowed. ``--multirun`` goes through ``hydra.main`` so that the
basic launcher (or the submitit launcher on SLURM) runs the sweep.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from knoblab._compat.hydra import (
    group_option_missing,
    main_in_module,
    override_key_and_value,
    struct_miss_key,
    sweep_first_point,
    unknown_override_key,
)
from knoblab.errors import ConfigError, UnknownKeyError

CONFIG_MODULE = "knoblab.conf"


def _override_of(missing: str, overrides: Sequence[str]) -> int | None:
    """Index of the plain ``key=value`` override whose key is ``missing`` or its nearest parent.

    The nearest: ``model=hf_smolvlm`` (a group choice) is a "parent" too.
    """
    best: int | None = None
    for i, o in enumerate(overrides):
        key, eq, _ = o.partition("=")
        if eq and not key.startswith(("+", "~")) and "@" not in key and "/" not in key:
            if missing == key or missing.startswith(key + "."):
                if best is None or len(key) >= len(overrides[best].partition("=")[0]):
                    best = i
    return best


def _child_value(override: str, missing: str) -> Any:
    """The value ``override`` (a dict-valued ``key={...}``) gives the nested key ``missing``."""
    try:
        key, value = override_key_and_value(override)
        for part in missing[len(key) + 1 :].split("."):
            value = value[part]
        return value
    except Exception:  # noqa: BLE001 - best effort: the message still names the key
        return None


#: Sections whose every key goes to a library unchanged and is checked there, against
#: the library's own signature (``train.trainer``: any ``lightning.pytorch.Trainer``
#: argument, see ``training.runner``): a key the YAML does not list is added, not refused.
_PASS_THROUGH = frozenset({"train.trainer"})


def _open_mapping_retry(
    config_name: str, overrides: Sequence[str], exc: BaseException
) -> list[str] | None:
    """``overrides`` with ``++`` on the one that adds a key to an empty mapping, else None.

    NOTE: an empty mapping in the YAML (``knob_values: {}``) is open: its keys are the
    user's. Hydra's struct mode rejects ``model.knob_values={vision_tokens: [100,300]}``
    as "Could not override" since the dict is merged key by key into ``{}``; ``++``
    (force add) is what the user meant. A new key in a non-empty section stays an error.
    """
    missing = struct_miss_key(exc)
    i = _override_of(missing, overrides) if missing else None
    if missing is None or i is None:
        return None
    if missing.rpartition(".")[0] in _PASS_THROUGH and overrides[i].partition("=")[0] == missing:
        return [*overrides[:i], "++" + overrides[i], *overrides[i + 1 :]]
    # the shape of the YAML: the group choices only (other overrides may add keys too)
    choices = [o for o in overrides if "." not in o.partition("=")[0].split("@")[0]]
    try:
        node = OmegaConf.select(_compose_raw(config_name, choices), missing.rpartition(".")[0])
    except Exception:  # noqa: BLE001 - the original error is reported instead
        return None
    if isinstance(node, DictConfig) and len(node) == 0:
        return [*overrides[:i], "++" + overrides[i], *overrides[i + 1 :]]
    return None


def _translate(exc: Exception, overrides: Sequence[str]) -> ConfigError:
    missing = struct_miss_key(exc)
    i = _override_of(missing, overrides) if missing else None
    if missing is not None and i is not None and missing != overrides[i].partition("=")[0]:
        # a dict-valued override (knobs={top_kk: [1]}): name the nested key it adds
        drop = overrides[i].partition("=")[0]
        return _unknown_key(missing, _child_value(overrides[i], missing), overrides, drop)
    msg = str(exc)
    key = unknown_override_key(msg)
    if key is not None:
        value = next(
            (o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None
        )
        return _unknown_key(key, value, overrides)
    missing_option = group_option_missing(msg)
    if missing_option is not None:
        group_opt, available = missing_option
        options = ", ".join(available) if available else "see knoblab/conf"
        group, _, opt = group_opt.rpartition("/")
        return ConfigError(group or group_opt, opt, f"one of: {options}")
    first = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
    return ConfigError("override", " ".join(overrides), "Hydra override syntax key=value", first)


def _unknown_key(
    key: str, value: Any, overrides: Sequence[str], drop: str | None = None
) -> ConfigError:
    """Name the valid keys beside an unknown one, by composing without the bad override.

    ``drop``: the key of the bad override when it is not ``key`` itself (a dict value).
    """
    parent, _, leaf = key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != (drop or key)]
    valid: list[str] = []
    try:
        cfg = _compose_raw(_CURRENT_CONFIG[-1], rest) if _CURRENT_CONFIG else None
        node = OmegaConf.select(cfg, parent) if (cfg is not None and parent) else cfg
        if isinstance(node, DictConfig):
            valid = [str(k) for k in node.keys()]
    except Exception:  # noqa: BLE001 - best effort: the message stays useful without the list
        valid = []
    if valid:
        return UnknownKeyError(key, value, valid)
    return ConfigError(key, value, "a key that exists in the config", "unknown key")


_CURRENT_CONFIG: list[str] = []


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """Rewrite ``group@pkg=option`` to ``group=option`` when ``pkg`` is the group's own package.

    NOTE: Hydra names a defaults-list entry ``dataset/sampling@dataset.sampling`` by its
    group alone (``dataset/sampling``) because the package equals the default one, and
    rejects ``dataset/sampling@dataset.sampling=random`` ("Could not override"). The
    docs and seed 000 use that spelling, so both spellings are accepted.
    """
    out = []
    for o in overrides:
        key, eq, value = o.partition("=")
        group, at, pkg = key.partition("@")
        if eq and at and not group.startswith(("+", "~")) and pkg == group.replace("/", "."):
            o = f"{group}={value}"
        out.append(o)
    return out


#: The user's config folder (``--config-dir``) while a command composes, else empty.
_CONFIG_DIR: list[str] = []


def _compose_raw(config_name: str, overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    if _CONFIG_DIR:
        # the user's folder is the primary source and knoblab's configs stay reachable, so a
        # YAML there can say `defaults: [profile, _self_]` (or `train` + `override train: toy`)
        extra = [f"hydra.searchpath=[pkg://{CONFIG_MODULE}]"]
        with initialize_config_dir(config_dir=_CONFIG_DIR[-1], version_base=None):
            return compose(config_name=config_name, overrides=[*extra, *overrides])
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def compose(
    config_name: str, overrides: Sequence[str] = (), config_dir: str | None = None
) -> DictConfig:
    """Compose ``knoblab/conf/<config_name>.yaml`` with Hydra overrides.

    ``config_dir`` (Hydra's ``--config-dir``): a folder of the user's YAML files, searched
    first; ``config_name`` may then name one of them (``--config-name``), whose defaults
    list can pull in knoblab's configs (``defaults: [profile, _self_]``).

    Raises:
        ConfigError: an unknown key (also one added with ``+`` outside the documented
            extension points, :data:`EXTENSION_POINTS`), an unknown preset or a
            malformed override.
    """
    with _config_dir(config_dir):
        overrides = normalize_overrides(overrides)
        cfg, applied = _compose(config_name, overrides)
        check_additions(config_name, applied)
        return cfg


@contextlib.contextmanager
def _config_dir(config_dir: str | None) -> Iterator[None]:
    if config_dir is None:
        yield
        return
    path = Path(config_dir).expanduser().absolute()
    if not path.is_dir():
        raise ConfigError("--config-dir", config_dir, "an existing folder of YAML configs")
    _CONFIG_DIR.append(str(path))
    try:
        yield
    finally:
        _CONFIG_DIR.pop()


#: Where ``+key=value`` may add a key the YAML does not list: sections whose keys go to a
#: library or a model family and are checked there against its own signature (a typo is
#: still one line with the closest name), or that are collections of the user's own names.
#: Any empty mapping in the YAML (``{}``) is open too; ``+group=option`` may add a config
#: group that exists; ``hydra...`` keys are Hydra's own. Everything else is refused.
EXTENSION_POINTS: tuple[str, ...] = (
    "train.trainer",  # lightning.pytorch.Trainer arguments
    "train.checkpoint",  # ModelCheckpoint arguments
    "train.early_stopping",  # EarlyStopping arguments
    "train.optim",  # optimizer arguments
    "train.datasets",  # training datasets by name
    "train.val_datasets",  # validation datasets by name
    "model.config",  # the model family's own config
    "model.knob_values",  # a Hugging Face model's knob domain
    "knobs",  # knob name -> values, checked against the model's knobs
)


def _is_group(group: str) -> bool:
    """True when ``group`` (``dataset/sampling``) is a config group of knoblab or --config-dir."""
    from importlib import resources

    roots = [Path(str(resources.files(CONFIG_MODULE))), *map(Path, _CONFIG_DIR[-1:])]
    return any((root / group).is_dir() for root in roots)


def check_additions(config_name: str, overrides: Sequence[str]) -> None:
    """Refuse ``+key=value`` / ``++key=value`` that add a key outside the extension points.

    NOTE: Hydra accepts ``+foo=1`` (and ``+experiment=x`` when no such group exists) as
    a new key that nothing reads: a typo that silently does nothing. Here a new key is
    refused, with the closest existing key, unless :data:`EXTENSION_POINTS` or an empty
    mapping of the YAML allows it.
    """
    pending: list[tuple[str, str]] = []
    for o in overrides:
        if not o.startswith("+"):
            continue
        key, _, value = o.lstrip("+").partition("=")
        path, at, _pkg = key.partition("@")
        if path.startswith("hydra"):
            continue
        if at or "/" in path or _is_group(path):
            if _is_group(path):
                continue
            raise ConfigError(key, value, "a config group of knoblab/conf (or --config-dir)")
        if any(path == p or path.startswith(p + ".") for p in EXTENSION_POINTS):
            continue
        pending.append((path, value))
    if not pending:
        return
    base = _compose_raw(config_name, [o for o in overrides if not o.startswith("+")])
    for path, value in pending:
        if OmegaConf.select(base, path, default=_MISSING) is not _MISSING:
            continue  # ++key=value on a key that exists: an ordinary override
        parts = path.split(".")
        # the deepest existing ancestor, and the first key below it that does not exist
        for depth in range(len(parts) - 1, -1, -1):
            parent = ".".join(parts[:depth])
            node = OmegaConf.select(base, parent, default=None) if parent else base
            if node is not None:
                break
        if isinstance(node, DictConfig) and len(node) == 0 and depth == len(parts) - 1:
            continue  # an open mapping: its keys are the user's
        if not isinstance(node, DictConfig):
            raise ConfigError(path, value, f"no new key: {parent} is a value, not a mapping")
        shown = value if depth == len(parts) - 1 else "{...}"
        raise UnknownKeyError(".".join(parts[: depth + 1]), shown, [str(k) for k in node])


_MISSING = object()


def _compose(config_name: str, overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """(the config, the overrides as applied: ``++`` added where an open mapping needs it)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _CURRENT_CONFIG.append(config_name)
    try:
        for _ in range(len(overrides) + 1):  # one retry per override at most
            try:
                return _compose_raw(config_name, overrides), overrides
            except (HydraException, OmegaConfBaseException) as exc:
                retry = _open_mapping_retry(config_name, overrides, exc)
                if retry is None:
                    raise _translate(exc, overrides) from exc
                overrides = retry
        raise AssertionError("unreachable: every retry adds a ++ to one more override")
    finally:
        _CURRENT_CONFIG.pop()


def _check_first_point(config_name: str, overrides: list[str]) -> list[str]:
    """Compose a sweep's first point (one-line errors now, not Hydra's); the overrides to run.

    The returned overrides carry the ``++`` that :func:`compose` adds for keys of an open
    mapping (``model.knob_values={...}``), so the sweep composes as a plain run would.
    Launcher keys (``hydra/...``, ``hydra....``) are left to Hydra.
    """
    from hydra.errors import HydraException

    kept: list[int] = []
    point: list[str] = []
    for i, o in enumerate(overrides):
        if o.lstrip("+~").startswith(("hydra/", "hydra.")):
            continue
        try:
            first = sweep_first_point(o)
            if first is not None:
                o = first
        except HydraException as exc:
            raise _translate(exc, [o]) from exc
        except Exception:  # noqa: BLE001 - a sweep kind without a first value: Hydra decides
            return list(overrides)
        kept.append(i)
        point.append(o)
    _, applied = _compose(config_name, point)
    check_additions(config_name, applied)
    out = list(overrides)
    for i, a in zip(kept, applied, strict=True):
        if a.startswith("++") and not out[i].startswith("+"):
            out[i] = "++" + out[i]
    return out


HELP_FLAGS = ("-h", "--help")


@dataclass
class HydraFlags:
    """Hydra's own command-line flags that knoblab commands accept (as ``hydra.main`` does)."""

    config_dir: str | None = None  # --config-dir / -cd: a folder of the user's YAML configs
    config_name: str | None = None  # --config-name / -cn: the primary config (no .yaml)
    cfg: str | None = None  # --cfg / -c job: print the composed config and exit
    validate: bool = False  # --validate: compose, check everything, print "ok" and exit

    def name(self, default: str) -> str:
        """The primary config's name: ``--config-name`` or the command's own."""
        return (self.config_name or default).removesuffix(".yaml")

    def argv(self) -> list[str]:
        """The flags again, for ``hydra.main`` (``--cfg`` is answered before a sweep starts)."""
        out = []
        if self.config_dir is not None:
            out.append(f"--config-dir={Path(self.config_dir).expanduser().absolute()}")
        if self.config_name is not None:
            out.append(f"--config-name={self.config_name}")
        return out


_FLAG_NAMES = {
    "--config-dir": "config_dir",
    "-cd": "config_dir",
    "--config-name": "config_name",
    "-cn": "config_name",
    "--cfg": "cfg",
    "-c": "cfg",
}


def split_hydra_flags(argv: Sequence[str]) -> tuple[HydraFlags, list[str]]:
    """(Hydra's ``--config-dir/-cd``, ``--config-name/-cn``, ``--cfg/-c``; the other arguments).

    Both ``--config-dir DIR`` and ``--config-dir=DIR`` spellings work.

    Raises:
        ConfigError: a flag without its value, or ``--cfg`` other than ``job``.
    """
    flags = HydraFlags()
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if args[i] == "--validate":
            flags.validate = True
        elif name in _FLAG_NAMES:
            if not eq:
                if i + 1 >= len(args) or args[i + 1].startswith("-"):
                    raise ConfigError(name, None, "a value after the flag")
                value = args[i + 1]
                i += 1
            setattr(flags, _FLAG_NAMES[name], value)
        else:
            rest.append(args[i])
        i += 1
    if flags.cfg is not None and flags.cfg != "job":
        raise ConfigError("--cfg", flags.cfg, "job (print the composed config and exit)")
    return flags, rest


def print_config(cfg: DictConfig) -> int:
    """``--cfg job``: the composed config as YAML on stdout; returns 0."""
    print(OmegaConf.to_yaml(cfg).rstrip("\n"))
    return 0


def wants_help(argv: Sequence[str]) -> bool:
    """True when ``-h`` or ``--help`` is among the arguments."""
    return any(a in HELP_FLAGS for a in argv)


def print_help(
    usage: str,
    config_name: str,
    overrides: Sequence[str] = (),
    updates: Mapping[str, Any] | None = None,
    examples: Sequence[str] = (),
) -> int:
    """Print ``usage``, ``examples``, the config groups and the composed config; returns 0.

    The config groups and their options are read from ``knoblab/conf``
    (:func:`knoblab.help.render_groups`), so a new option file shows up without code.

    Every Hydra-configured command answers ``-h``/``--help`` this way. ``-h``,
    ``--help``, ``-m`` and ``--multirun`` are dropped from ``overrides`` (they are not
    Hydra overrides), so ``knoblab plan -m --help dataset.sampling.seed=3`` shows the
    config that the first point would compose. ``updates`` (top-level keys) are set
    after composing: a command's flags, such as ``knoblab analyze --out DIR``.

    Usage (prints the help text and the whole composed config)::

        print_help("knoblab plan [overrides]", "plan", ["dataset.size=10"])
    """
    from knoblab.help import render_help

    flags, rest = split_hydra_flags(overrides)
    rest = [a for a in rest if a not in (*HELP_FLAGS, "-m", "--multirun")]
    # a bad override: the one-line error, before any text
    cfg = compose(flags.name(config_name), rest, flags.config_dir)
    print(render_help(usage, config_name, examples))
    print("\nConfig (with your overrides), every key overridable as key=value:\n")
    for key, value in (updates or {}).items():
        cfg[key] = value
    print(OmegaConf.to_yaml(cfg))
    return 0


def split_multirun(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """(is_multirun, the rest of argv) for ``-m`` / ``--multirun``."""
    rest = [a for a in argv if a not in ("-m", "--multirun")]
    return len(rest) != len(argv), rest


def run_multirun(
    config_name: str,
    task: Callable[[DictConfig], Any],
    argv: Sequence[str],
    prog: str,
    flags: HydraFlags | None = None,
) -> int:
    """Run ``task`` once per point of a Hydra sweep (basic launcher unless configured).

    The first point is composed first, so a bad override is the same one-line
    ``ConfigError`` as without ``-m`` (and no job starts).
    """
    from knoblab.errors import KnobLabError

    def _job(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except KnobLabError as exc:
            # Hydra reports a job's Exception as a full traceback and exits 1; a
            # BaseException passes through it, so the CLI can print its one line (exit 2).
            raise _JobError(exc) from exc

    # hydra.main reads sys.argv; config_path "conf" is the package's conf dir.
    _app = main_in_module(_job, __name__, "conf", config_name)
    old = sys.argv
    flags = flags or HydraFlags()
    with _config_dir(flags.config_dir):
        overrides = _check_first_point(flags.name(config_name), normalize_overrides(argv))
    sys.argv = [prog, "--multirun", *flags.argv(), *overrides]
    try:
        _app()
    except _JobError as exc:
        raise exc.error from None
    finally:
        sys.argv = old
    return 0


def run_validate(
    config_name: str,
    validator: Callable[[DictConfig], Any],
    flags: HydraFlags,
    overrides: Sequence[str],
) -> int:
    """``--validate``: compose (a sweep's first point), run ``validator``, print ``ok``; 0.

    A bad config raises its one-line ``ConfigError`` (the CLI prints it and exits 2).
    """
    point = []
    for o in normalize_overrides(overrides):
        first = None if o.lstrip("+~").startswith("hydra") else sweep_first_point(o)
        point.append(first or o)
    validator(compose(flags.name(config_name), point, flags.config_dir))
    print("ok")
    return 0


def run_command(
    argv: Sequence[str],
    usage: str,
    config_name: str,
    task: Callable[[DictConfig], Any],
    prog: str,
    examples: Sequence[str] = (),
    validator: Callable[[DictConfig], Any] | None = None,
) -> int:
    """A Hydra-configured command's whole ``main``: ``--help``, ``-m`` sweeps, or one run.

    ``validator``: the command's dry run for ``--validate`` (``knoblab.commands.validate``).

    Usage (a command module's ``main``)::

        run_command(["dataset.size=10"], __doc__, "plan", run, "knoblab plan")
    """
    if wants_help(argv):
        return print_help(usage, config_name, argv, examples=examples)
    flags, rest = split_hydra_flags(argv)
    multirun, overrides = split_multirun(rest)
    if flags.validate:
        if validator is None:
            raise ConfigError("--validate", True, "a command with a dry run (profile, plan, ...)")
        return run_validate(config_name, validator, flags, overrides)
    if flags.cfg == "job":
        return print_config(compose(flags.name(config_name), overrides, flags.config_dir))
    if multirun:
        return run_multirun(config_name, task, overrides, prog, flags)
    task(compose(flags.name(config_name), overrides, flags.config_dir))
    return 0


class _JobError(BaseException):
    """Carries a sweep job's ``KnobLabError`` past Hydra's exception reporting."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error
