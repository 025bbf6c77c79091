"""Turn a config mapping into a ``SamplingPlan``, bridging the legacy ``repeats`` keys.

``resolve_sampling(cfg, dataset_size)`` reads ``dataset.sampling.*`` and, for one
release window, the deprecated top-level ``repeats`` (old Stage-1 key) and
``run.stage1_repeats`` (old Stage-2 key for its Stage-1 workload), seed 000's bridge:

- ``repeats <= size``: ``num_samples_per_epoch = repeats``, 1 epoch, in order;
- ``repeats > size``: ``num_samples_per_epoch = size``, ``ceil(repeats / size)`` epochs,
  the last epoch cut to the remainder, so the plan yields exactly the old cyclic loop's
  sequence: index ``i mod size`` for ``i < repeats``.

Readings chosen where the seed is open (see docs/sampling.md):

- "``dataset.sampling`` is not given" means: its ``num_samples_per_epoch``,
  ``num_epochs`` and ``randomize`` equal the ``default`` preset. The presets always
  mount the section, so the config cannot tell "not given" from "given with default
  values"; a section equal to the defaults asks for nothing the legacy key conflicts
  with. ``seed`` is not compared: it does not conflict with the (unshuffled) legacy
  mapping and is carried over. So ``full`` (= default values) with ``repeats=50``
  applies ``repeats``; ``random``, ``fixed`` or any changed count wins over it.
- ``run.stage1_repeats`` maps exactly like ``repeats``. Seed 000's literal Stage-2
  overrides (``num_samples_per_epoch=N, num_epochs=1``) would cap the workload at one
  pass over the dataset when N > size; its stated guarantee is that prior overrides
  keep producing the same totals, and the old Stage-2 passed ``repeats=stage1_repeats``.
  When both legacy keys are set, ``run.stage1_repeats`` wins (it was the override that
  Stage-2 applied on top of ``repeats``) and ``repeats`` is reported as ignored.

Every legacy key logs a WARNING on ``knoblab.sampling`` and raises a ``FutureWarning``
that names the new keys and the computed mapping (or says the key was ignored); the
plan records it in ``plan.describe()["legacy"]``.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     plan = resolve_sampling({"repeats": 7}, dataset_size=3)
    >>> list(plan)
    [0, 1, 2, 0, 1, 2, 0]
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from knoblab.config import check_int, plain, to_dataclass
from knoblab.errors import ConfigError
from knoblab.sampling.plan import SamplingConfig, SamplingPlan, check_dataset_size

log = logging.getLogger("knoblab.sampling")

LEGACY_KEYS = ("run.stage1_repeats", "repeats")  # precedence order
_COMPARED = ("num_samples_per_epoch", "num_epochs", "randomize")


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _legacy_value(key: str, value: Any) -> int | None:
    if value is None:
        return None
    check_int(key, value, 1, allow_none=True, hint="deprecated: use dataset.sampling.*")
    return value


def sampling_given(config: SamplingConfig) -> bool:
    """Whether ``config`` asks for anything the ``default`` preset does not (seed aside)."""
    default = SamplingConfig()
    return any(getattr(config, f) != getattr(default, f) for f in _COMPARED)


def legacy_mapping(repeats: int, dataset_size: int) -> tuple[SamplingConfig, int | None]:
    """Seed 000's mapping of ``repeats``: the config and the cut last epoch (None if full).

    Example:
        >>> legacy_mapping(2500, 1000)
        (SamplingConfig(num_samples_per_epoch=1000, num_epochs=3, randomize=False, seed=None), 500)
    """
    if repeats <= dataset_size:
        return SamplingConfig(num_samples_per_epoch=repeats, num_epochs=1), None
    epochs = -(-repeats // dataset_size)
    last = repeats - (epochs - 1) * dataset_size
    cut = None if last == dataset_size else last
    return SamplingConfig(num_samples_per_epoch=dataset_size, num_epochs=epochs), cut


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, FutureWarning, stacklevel=3)


def resolve_sampling(cfg: Mapping[str, Any] | Any, dataset_size: int) -> SamplingPlan:
    """The sampling plan a full config asks for (``dataset.sampling.*`` or legacy keys).

    ``cfg`` is the composed config of a command (a ``DictConfig`` or a plain mapping);
    only ``dataset.sampling``, ``repeats`` and ``run.stage1_repeats`` are read.

    Raises:
        ConfigError: a bad ``dataset.sampling.*`` value or a bad legacy value.
        DataError: ``dataset_size`` < 1.
    """
    data = plain(cfg) or {}
    if not isinstance(data, Mapping):
        raise ConfigError("config", data, "a mapping with dataset.sampling")
    config = to_dataclass(_get(data, "dataset.sampling"), SamplingConfig, "dataset.sampling")
    given = {k: v for k in LEGACY_KEYS if (v := _legacy_value(k, _get(data, k))) is not None}
    if not given:
        return SamplingPlan(config, dataset_size)

    record: dict[str, Any] = {"applied": None, "ignored": {}, "messages": []}
    if sampling_given(config):
        new = ", ".join(f"dataset.sampling.{f}={getattr(config, f)!r}" for f in _COMPARED)
        for key, value in given.items():
            record["ignored"][key] = value
            record["messages"].append(
                f"{key}={value} is deprecated and was ignored: dataset.sampling.* is set "
                f"({new}) and the new keys win"
            )
        for message in record["messages"]:
            _warn(message)
        return SamplingPlan(config, dataset_size, legacy=record)

    key = next(k for k in LEGACY_KEYS if k in given)
    repeats = given[key]
    for other, value in given.items():
        if other != key:
            record["ignored"][other] = value
            record["messages"].append(
                f"{other}={value} is deprecated and was ignored: {key}={repeats} takes precedence"
            )
    dataset_size = check_dataset_size(dataset_size)
    mapped, cut = legacy_mapping(repeats, dataset_size)
    mapped = SamplingConfig(
        num_samples_per_epoch=mapped.num_samples_per_epoch,
        num_epochs=mapped.num_epochs,
        randomize=False,
        seed=config.seed,
    )
    mapping = {
        "num_samples_per_epoch": mapped.num_samples_per_epoch,
        "num_epochs": mapped.num_epochs,
        "randomize": False,
    }
    text = " ".join(f"dataset.sampling.{k}={str(v).lower()}" for k, v in mapping.items())
    cut_text = f", last epoch cut to {cut} samples" if cut is not None else ""
    record["applied"] = {
        "key": key,
        "value": repeats,
        "mapping": mapping,
        "last_epoch_samples": cut,
    }
    record["messages"].insert(
        0,
        f"{key}={repeats} is deprecated; use dataset.sampling.* instead. Mapped to: {text}"
        f"{cut_text} ({repeats} samples: index i mod {dataset_size} for i < {repeats}, "
        "as the old cyclic loop)",
    )
    for message in record["messages"]:
        _warn(message)
    return SamplingPlan(mapped, dataset_size, last_epoch_samples=cut, legacy=record)


def sampling_overrides(plan: SamplingPlan) -> list[str]:
    """Hydra overrides that rebuild ``plan`` in another command (Stage-2 -> its Stage-1 workload).

    The seed in effect is always passed, so a drawn seed is replayed, not drawn again.
    A plan whose last epoch is cut (legacy ``repeats`` > dataset size) cannot be written
    with the new keys; it is passed on as ``repeats=<value>`` (the target config must
    accept the legacy key, as ``profile`` and ``plan`` do) and warns there again.

    Example:
        >>> sampling_overrides(SamplingPlan(SamplingConfig(num_epochs=2, seed=3), 10))  # doctest: +NORMALIZE_WHITESPACE
        ['dataset/sampling@dataset.sampling=default', 'dataset.sampling.num_samples_per_epoch=null',
         'dataset.sampling.num_epochs=2', 'dataset.sampling.randomize=false', 'dataset.sampling.seed=3']
    """
    c = plan.config
    seed = f"dataset.sampling.seed={plan.seed}"
    applied = (plan.legacy or {}).get("applied")
    if applied and applied["last_epoch_samples"] is not None:
        return ["dataset/sampling@dataset.sampling=default", seed, f"repeats={applied['value']}"]
    n_per = "null" if c.num_samples_per_epoch is None else str(c.num_samples_per_epoch)
    return [
        "dataset/sampling@dataset.sampling=default",  # ensure the group is mounted (seed 000)
        f"dataset.sampling.num_samples_per_epoch={n_per}",
        f"dataset.sampling.num_epochs={c.num_epochs}",
        f"dataset.sampling.randomize={str(c.randomize).lower()}",
        seed,
    ]
