"""A sweep's setup, shared by the sweep runner (Stage 1) and the deep profiler (Stage 2).

:func:`setup_sweep` reads the composed config once: the ``run`` and ``design`` sections,
the dataset (built unless given; an empty one is refused before the model loads), the
sampling plan (under ``torchrun`` every rank adopts rank 0's seed), the model (built
unless given), ``dataset.prompt``, the checked knob lists and the configurations of
the design. :func:`sweep_identity` adds what only the runner needs: the output
directory's identity and the environment record.

Example:
    >>> from knoblab.profiling.synthetic import ListDataset, WaitAdapter
    >>> s = setup_sweep({"knobs": {"top_k": [1, 2]}, "dataset": {"name": "toy"}},
    ...                 adapter=WaitAdapter(), dataset=ListDataset.synthetic(3, name="toy"))
    >>> len(s.configs), len(s.plan), s.task
    (2, 3, 'toy')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knoblab.config import plain, to_dataclass
from knoblab.errors import ConfigError, DataError
from knoblab.models.adapter import ModelAdapter, check_knob
from knoblab.profiling import records as rec
from knoblab.profiling.design import DesignConfig, make_design
from knoblab.profiling.distributed import broadcast, dist_info
from knoblab.profiling.measure import check_metric
from knoblab.profiling.precision import PrecisionConfig
from knoblab.profiling.schedule import SCHEDULES


@dataclass
class RunConfig:
    """The ``run`` config section of ``knoblab profile``.

    Attributes:
        output_dir: results root; each dataset writes into ``<output_dir>/<task>/``.
        num_runs_per_sample: timed runs per sample; the per-sample latency is their median.
        warmup_runs: unrecorded inferences at a configuration's first visit.
        max_new_tokens: generation length cap (output tokens, the prefill's token included).
        retry_failed: rerun configurations recorded as ``oom`` or ``failed``.
        progress: show the rich progress bar (rank 0 only).
        stage1_repeats: deprecated (Stage-2's old key); use ``dataset.sampling.*``.
        logger: ``none``, ``tensorboard``, ``mlflow`` or ``wandb``: log each configuration's
            row and the reports there (rank 0; ``profiling.tracking``, ``tracking.*``).
        schedule: ``interleaved`` (rounds over the samples, each visiting every
            configuration in a seeded random order) or ``sequential`` (configuration
            after configuration).
        schedule_seed: seed of the interleaved rounds' orders.
        switch_warmup_runs: unrecorded inferences at each later switch to a configuration.
        drift_probe_every: rounds between two drift probes (0: no probes, no drift figure).
        journal_fsync_s: fsync the journal at most this often (0: after every unit).
        precision: early stopping (``profiling.precision.PrecisionConfig``), or null.
        percentiles: the latency percentiles recorded, e.g. ``[50, 90, 99]`` (``p90``).
    """

    output_dir: str = "results/profile"
    num_runs_per_sample: int = 1
    warmup_runs: int = 2
    max_new_tokens: int = 8
    retry_failed: bool = False
    progress: bool = True
    stage1_repeats: int | None = None
    logger: str = "none"
    schedule: str = "interleaved"
    schedule_seed: int = 0
    switch_warmup_runs: int = 0
    drift_probe_every: int = 1
    journal_fsync_s: float = 1.0
    precision: dict[str, Any] | None = None
    percentiles: list[float] = field(default_factory=lambda: list(rec.DEFAULT_PERCENTILES))

    def __post_init__(self) -> None:
        self.percentiles = list(rec.check_percentiles(self.percentiles, "percentiles"))
        if self.num_runs_per_sample < 1:
            raise ConfigError("num_runs_per_sample", self.num_runs_per_sample, "an integer >= 1")
        if self.warmup_runs < 0:
            raise ConfigError("warmup_runs", self.warmup_runs, "an integer >= 0")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", self.max_new_tokens, "an integer >= 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        if self.switch_warmup_runs < 0:
            raise ConfigError("switch_warmup_runs", self.switch_warmup_runs, "an integer >= 0")
        if self.drift_probe_every < 0:
            raise ConfigError(
                "drift_probe_every", self.drift_probe_every, "an integer >= 0 (0: no probes)"
            )
        if self.journal_fsync_s < 0:
            raise ConfigError("journal_fsync_s", self.journal_fsync_s, "a number of seconds >= 0")

    def precision_config(self) -> PrecisionConfig | None:
        """``precision`` checked (``run.precision.*`` keys in errors), or None."""
        if self.precision is None:
            return None
        return to_dataclass(self.precision, PrecisionConfig, "run.precision")


@dataclass
class SweepSetup:
    """Everything a sweep reads from its config before it touches the output directory.

    Attributes:
        data: the composed config as plain data.
        run: the ``run`` section (:class:`RunConfig`).
        design: the ``design`` section.
        adapter: the model.
        dataset: the dataset, ``dataset.prompt`` applied.
        ds_name: the dataset's name; ``task`` its records' task name.
        prompt: the ``dataset.prompt`` in effect (``knoblab.data.prompt``), or None.
        lists: the checked knob lists; ``configs`` the design's configurations.
        plan: the sampling plan; ``plan_desc`` its ``describe()``.
        rank, world: this process's rank and the world size (``torchrun``).
        out_dir: ``<run.output_dir>/<task>`` (the runner's; deep-profile has its own).
        identity, environment: the sweep's identity and environment record
            (:func:`sweep_identity`; empty until then).
    """

    data: dict[str, Any]
    run: Any
    design: DesignConfig
    adapter: ModelAdapter
    dataset: Any
    ds_name: str
    prompt: Any
    lists: dict[str, list[Any]]
    configs: list[dict[str, Any]]
    plan: Any
    plan_desc: dict[str, Any]
    rank: int = 0
    world: int = 1
    identity: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return rec.task_name(self.ds_name)

    @property
    def out_dir(self) -> Path:
        return Path(self.run.output_dir) / self.task

    def stream(self) -> list[tuple[int, int, int]]:
        """This rank's [(plan position, epoch, dataset index)] (positions rank, rank + world, ...)."""
        shard = self.plan.shard(self.rank, self.world)
        positions = shard.positions().tolist()
        indices = shard.indices().tolist()
        per_epoch = max(1, int(self.plan_desc["samples_per_epoch"]))
        last = self.plan.num_epochs - 1
        return [(p, min(p // per_epoch, last), i) for p, i in zip(positions, indices, strict=True)]

    def rounds(self) -> list[list[int]]:
        """Round ``r``'s plan positions over all ranks: ``[r * world, (r + 1) * world)``."""
        n, w = len(self.plan), self.world
        return [list(range(r * w, min((r + 1) * w, n))) for r in range(-(-n // w))]


def knob_lists(cfg_knobs: Mapping[str, Any] | None, adapter: ModelAdapter) -> dict[str, list[Any]]:
    """The ``knobs`` section as {name: values}, null lists dropped, checked against the model.

    Raises:
        ConfigError: an unknown knob, a value the model does not allow, an empty list,
            or both ``tier`` and ``vision_tokens`` (they are two modes of one knob).
    """
    specs = adapter.knobs()
    lists: dict[str, list[Any]] = {}
    for name, values in (plain(cfg_knobs) or {}).items():
        if values is None:
            continue
        vals = list(values) if isinstance(values, (list, tuple)) else [values]
        if not vals:
            raise ConfigError(
                f"knobs.{name}",
                [],
                "a non-empty list of values, or null to leave the knob at its default",
            )
        for v in vals:
            try:
                check_knob(specs, name, v, adapter.name)
            except ConfigError as exc:
                if name in specs or specs.get("tier") is not None:
                    raise
                # the default knobs=reference lists the reference model's tiers: say which
                # preset fits a model without them
                hint = "knobs=hf lists vision_tokens for Hugging Face models; docs/knobs.md"
                raise ConfigError(exc.key, exc.value, exc.allowed, exc.hint or hint) from None
        lists[name] = vals
    if "tier" in lists and "vision_tokens" in lists:
        raise ConfigError(
            "knobs.vision_tokens",
            lists["vision_tokens"],
            "null when knobs.tier is set (tier mode and target-tokens mode exclude each other)",
        )
    if not lists:
        raise ConfigError(
            "knobs",
            {},
            f"at least one knob list; model {adapter.name!r} has {', '.join(specs) or 'none'}",
        )
    return lists


def design_configs(
    data: Mapping[str, Any], adapter: ModelAdapter, design: DesignConfig
) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """(knob lists, the design's configurations); refuses a design that yields none."""
    lists = knob_lists(data.get("knobs"), adapter)
    configs = make_design(
        design.name, lists, levels=design.levels, num_points=design.num_points, seed=design.seed
    )
    if not configs:
        raise ConfigError(
            "design.name",
            design.name,
            "a design that yields at least one configuration for these knob lists",
        )
    return lists, configs


def _dataset(data: Mapping[str, Any], dataset: Any | None) -> tuple[Any, str]:
    from knoblab.data.registry import build_dataset

    if dataset is None:
        dataset = build_dataset(data.get("dataset") or {})
    name = getattr(dataset, "name", None) or (data.get("dataset") or {}).get("name", "dataset")
    if len(dataset) == 0:
        raise DataError(
            f"dataset.name={name!r} has no samples: allowed is a dataset with >= 1 sample"
        )
    return dataset, str(name)


def setup_sweep(
    cfg: Mapping[str, Any] | Any,
    *,
    adapter: ModelAdapter | None = None,
    dataset: Any | None = None,
    choose: Callable[[dict[str, Any], ModelAdapter, DesignConfig], list[dict[str, Any]]]
    | None = None,
) -> SweepSetup:
    """Read ``cfg`` (a composed ``profile``/``deep_profile`` config) into a :class:`SweepSetup`.

    ``choose(data, adapter, design)`` replaces the design's configurations (deep-profile's
    ``deep.configurations``). The model is built (``build_adapter(cfg.model,
    cfg.hardware)``) only after the dataset and the run settings passed their checks.

    Raises:
        ConfigError: bad run/design/knob settings. DataError: an empty dataset.
    """
    from knoblab.data.prompt import prompt_for, with_prompt
    from knoblab.sampling import resolve_sampling

    data = plain(cfg)
    run_cfg = to_dataclass(data.get("run"), RunConfig, "run")
    design = to_dataclass(data.get("design"), DesignConfig, "design")
    rank, world = dist_info()
    dataset, ds_name = _dataset(data, dataset)
    check_metric(getattr(dataset, "metric", "exact_match"))
    plan = resolve_sampling(data, len(dataset))  # legacy keys -> FutureWarning, mapped
    if world > 1:
        # Every rank must walk the same plan: adopt rank 0's seed (drawn when none was set).
        seed = broadcast(plan.seed, world)
        if seed != plan.seed:
            plan.load_state_dict({**plan.state_dict(), "seed": seed})
    if adapter is None:
        from knoblab.models.registry import build_adapter

        adapter = build_adapter(data.get("model") or {}, data.get("hardware") or {})
    prompt = prompt_for(data.get("dataset"), dataset, adapter)
    dataset = with_prompt(dataset, prompt)
    if choose is None:
        lists, configs = design_configs(data, adapter, design)
    else:
        lists, configs = {}, choose(data, adapter, design)
    return SweepSetup(
        data=data,
        run=run_cfg,
        design=design,
        adapter=adapter,
        dataset=dataset,
        ds_name=ds_name,
        prompt=prompt,
        lists=lists,
        configs=configs,
        plan=plan,
        plan_desc=plan.describe(),
        rank=rank,
        world=world,
    )


def sweep_identity(s: SweepSetup, model_config: Mapping[str, Any] | None) -> None:
    """Fill ``s.identity`` (what a rerun into the directory must match) and ``s.environment``."""
    from knoblab.profiling.identity import model_identity

    section = s.data.get("dataset") or {}
    s.identity = {
        "model": model_identity(s.adapter, model_config or {}),
        "dataset": {k: v for k, v in section.items() if k not in ("sampling", "prompt")}
        | {"name": s.ds_name, "size": len(s.dataset)}
        # only a prompt that is there: sweeps from before dataset.prompt stay resumable
        | ({"prompt": s.prompt.as_dict()} if s.prompt else {}),
        "device": getattr(s.adapter, "device", "cpu"),
        "dtype": getattr(s.adapter, "dtype", "float32"),
        "max_new_tokens": s.run.max_new_tokens,
        "sample_ids": [int(i) for i in s.plan.indices().tolist()],
    }
    s.environment = rec.environment_info(
        device=s.identity["device"],
        dtype=s.identity["dtype"],
        seed=s.plan.seed,
        sampling=s.plan_desc,
        extra={
            "world_size": s.world,
            "prompt": s.prompt.as_dict(),
            "schedule": {"mode": s.run.schedule, "seed": s.run.schedule_seed},
        },
    )
