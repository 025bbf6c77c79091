"""Wire the training parts into a Lightning ``Trainer`` from a composed config, and run it.

``run_training(cfg)`` is what ``knoblab train`` calls; a user can call it with any
mapping shaped like ``knoblab/conf/train.yaml``. The pieces are separate functions
(``build_datamodule``, ``build_callbacks``, ``build_logger``, ``build_trainer``) so a
notebook can take one and replace another.

Every key of ``train.trainer`` is a ``lightning.pytorch.Trainer`` argument and reaches
the Trainer unchanged (``gradient_clip_val``, ``accumulate_grad_batches``,
``precision``, ``max_steps`` / ``max_epochs``, ``devices``, ``strategy``, ...); an
unknown key is a one-line error suggesting the closest Trainer argument. The seed's
script silently ignored two of them; here a test checks that each one arrives.

Usage (a training run: minutes, so not a doctest)::

    from knoblab.hydra_utils import compose
    result = run_training(compose("train", ["train=smoke"]))
    result.last_checkpoint  # PosixPath('runs/train/checkpoints/last.ckpt')
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import lightning.pytorch as L
import numpy as np
import torch

from knoblab._compat.lightning import fit_interrupt_as_keyboard_interrupt, quiet_cloud_tip
from knoblab.atomic import ensure_dir, remove_stale_tmp
from knoblab.config import Range, check_int, check_number, plain, to_dataclass
from knoblab.errors import CheckpointError, ConfigError, UnknownKeyError
from knoblab.sampling.weighted import weights_from_scores
from knoblab.training.callbacks import (
    CurriculumCallback,
    EpochHeartbeat,
    Heartbeat,
    LastCheckpoint,
    last_checkpoint,
)
from knoblab.training.checkpoint import AtomicCheckpointIO, read_checkpoint, save_weights
from knoblab.training.chunk_rules import ChunkConfig
from knoblab.training.datamodule import DatasetSpec, MultiDatasetDataModule
from knoblab.training.module import KnobLabModule, OptimConfig
from knoblab.training.tasks import TrainTask

log = logging.getLogger("knoblab.training")

LOGGERS = ("csv", "tensorboard", "wandb", "none")
# Trainer arguments that the run builds itself from other keys.
_OWNED = {"callbacks", "logger", "plugins", "default_root_dir", "use_distributed_sampler", "self"}
_DATASET_KEYS = {"weight", "score", "score_power"}


@dataclass
class CurriculumStage:
    """One stage of ``train.curriculum``: from ``epoch`` on, these weights and score power."""

    epoch: int | None = None
    """First epoch of the stage (required; stages in increasing epoch order)."""
    weights: dict[str, Annotated[float, Range(greater_than=0)]] | None = None
    """Dataset name -> sampling weight (> 0); null: keep the datasets' own weights."""
    score_power: float | None = None
    """Per-sample weight = score ** score_power; null: keep the datasets' own."""

    def __post_init__(self) -> None:
        check_int("epoch", self.epoch, 0)


@dataclass
class TrainConfig:
    """Schema of the ``train`` section (``conf/train.yaml``; presets in ``conf/train/``)."""

    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Name -> dataset keys (format, size, seed, variant, ... as ``dataset.*``) + ``weight``
    (> 0), ``score`` (a per-sample metadata key) and ``score_power``. The keys are the
    dataset format's own: its builder checks them."""
    val_datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Name -> dataset keys; validation runs on their concatenation."""
    mixing: str = "weighted"
    """``weighted`` (a dataset by weight, then a sample) or ``sequential`` (every sample once)."""
    samples_per_epoch: Annotated[int, Range(1)] | None = None
    """Weighted draws per epoch (all ranks); null: the datasets' total size."""
    batch_size: Annotated[int, Range(1)] = 32
    """Samples per batch per rank."""
    val_batch_size: Annotated[int, Range(1)] | None = None
    """Validation batch size; null: ``batch_size``."""
    num_workers: Annotated[int, Range(0)] = 0
    """DataLoader worker processes per rank."""
    num_threads: Annotated[int, Range(1)] | None = None
    """torch intra-op threads per process; null: torch's default (all cores)."""
    train_chunk_size: int | None = None
    """Chunked loading: training batches per chunk (= per epoch); null: off (checked by ChunkConfig)."""
    val_chunk_size: int | None = None
    """Chunked loading: validation batches per chunk; null: off (checked by ChunkConfig)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and learning-rate schedule."""
    compile: bool = False
    """``torch.compile`` the network."""
    init_weights: str | None = None
    """Start from these weights (``.ckpt`` or ``.safetensors``) instead of random."""
    resume: str | None = None
    """Resume a run: a checkpoint path, or ``last`` (``output_dir/checkpoints/last.ckpt``)."""
    output_dir: str = "runs/train"
    """``checkpoints/`` and ``logs/`` go here."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """``lightning.pytorch.Trainer`` arguments, passed unchanged; each key is checked against
    the Trainer's signature when the Trainer is built (a mapping on purpose: any argument)."""
    checkpoint: dict[str, Any] | None = field(default_factory=dict)
    """``ModelCheckpoint`` arguments (checked against its signature); null: no checkpoints."""
    early_stopping: dict[str, Any] | None = None
    """``EarlyStopping`` arguments (checked against its signature), e.g. ``{patience: 3}``; null: off."""
    lr_monitor: bool = True
    """Log the learning rate every step."""
    logger: str = "csv"
    """``csv``, ``tensorboard``, ``wandb`` or ``none``."""
    heartbeat_every_n_steps: Annotated[int, Range(1)] | None = 50
    """One log line every N steps; null: off."""
    curriculum: list[CurriculumStage] | None = None
    """Dataset weights and score power by epoch; null: fixed weights."""
    export: str | None = None
    """Write the final weights here (``.safetensors`` + ``.json`` sidecar)."""

    def __post_init__(self) -> None:
        # built in code with plain mappings (TrainConfig(optim={...})): typed here too
        if isinstance(self.optim, Mapping):
            self.optim = to_dataclass(self.optim, OptimConfig, "train.optim")
        if self.curriculum is not None:
            self.curriculum = [
                to_dataclass(st, CurriculumStage, f"train.curriculum[{i}]")
                if isinstance(st, Mapping)
                else st
                for i, st in enumerate(self.curriculum)
            ]
        if not self.datasets:
            raise ConfigError("datasets", self.datasets, "at least one training dataset")
        if self.logger not in LOGGERS:
            raise ConfigError("logger", self.logger, f"one of {', '.join(LOGGERS)}")
        if self.mixing not in ("weighted", "sequential"):
            raise ConfigError("mixing", self.mixing, "weighted or sequential")
        for name, d in self.datasets.items():
            check_number(f"train.datasets.{name}.weight", d.get("weight", 1.0), greater_than=0)


@dataclass
class TrainResult:
    """What a run leaves behind."""

    output_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics: dict[str, float]
    module: KnobLabModule
    trainer: L.Trainer
    export: Path | None = None


def _check_kwargs(
    section: str, given: Mapping[str, Any], target: Any, owned: set[str] = frozenset()
) -> dict[str, Any]:
    """Keys of ``given`` must be parameters of ``target`` (a callable) and not in ``owned``."""
    params = {
        p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")
    }
    for k, v in given.items():
        if k in owned:
            raise ConfigError(
                f"{section}.{k}",
                v,
                "set by knoblab train itself",
                "see conf/train.yaml for its own key",
            )
        if k not in params:
            raise UnknownKeyError(f"{section}.{k}", v, sorted(params - owned))
    return dict(given)


def _scores(ds: Any, key: str, name: str) -> np.ndarray:
    """Per-sample scores: ``ds.score(i)`` when ``key == "score"``, else ``ds[i].metadata[key]``."""
    if key == "score" and callable(getattr(ds, "score", None)):
        return np.array([ds.score(i) for i in range(len(ds))], dtype=np.float64)
    out = np.empty(len(ds), dtype=np.float64)
    for i in range(len(ds)):
        meta = getattr(ds[i], "metadata", None) or {}
        if key not in meta:
            raise ConfigError(
                f"train.datasets.{name}.score",
                key,
                f"a metadata key of the samples: {sorted(meta)}",
            )
        out[i] = float(meta[key])
    return out


def build_dataset(name: str, cfg: Mapping[str, Any], task: TrainTask) -> Any:
    """One dataset from its config (``format`` picks the loader; the task may bring its own)."""
    data = {k: v for k, v in dict(cfg).items() if k not in _DATASET_KEYS}
    data.setdefault("name", name)
    own = task.extra.get("build_dataset")
    if own is not None and data.get("format") == task.kind:
        return own(data)
    from knoblab.data.registry import build_dataset as registry_build

    return registry_build(data)


def build_datamodule(
    tc: TrainConfig, task: TrainTask, seed: int
) -> tuple[MultiDatasetDataModule, dict[str, np.ndarray]]:
    """The data module of the run, and per-dataset scores (for a difficulty curriculum)."""
    train, scores = [], {}
    for name, dcfg in tc.datasets.items():
        ds = build_dataset(name, dcfg, task)
        sw = None
        if dcfg.get("score"):
            scores[name] = _scores(ds, dcfg["score"], name)
            sw = weights_from_scores(scores[name], float(dcfg.get("score_power", 1.0)), floor=1e-6)
        train.append(DatasetSpec(name, ds, float(dcfg.get("weight", 1.0)), sw))
    val = [
        DatasetSpec(name, build_dataset(name, dcfg, task)) for name, dcfg in tc.val_datasets.items()
    ]
    chunk = to_dataclass(
        {"train_chunk_size": tc.train_chunk_size, "val_chunk_size": tc.val_chunk_size},
        ChunkConfig,
        "train",
    )
    dm = MultiDatasetDataModule(
        train,
        val,
        task.collate,
        tc.batch_size,
        val_batch_size=tc.val_batch_size,
        mixing=tc.mixing,
        samples_per_epoch=tc.samples_per_epoch,
        seed=seed,
        train_chunk_size=chunk.train_chunk_size,
        val_chunk_size=chunk.val_chunk_size,
        num_workers=tc.num_workers,
        persistent_workers=tc.num_workers > 0,
    )
    return dm, scores


def build_callbacks(
    tc: TrainConfig, out: Path, scores: Mapping[str, np.ndarray], has_val: bool
) -> list[L.Callback]:
    """Checkpointing, LR monitor, early stopping, heartbeats and curriculum, from config."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    cbs: list[L.Callback] = [EpochHeartbeat()]
    if tc.checkpoint is not None:  # null: no checkpoints at all (benchmarks)
        user = dict(tc.checkpoint)
        save_last = user.pop("save_last", True)
        ck = {
            "dirpath": str(out / "checkpoints"),
            "save_top_k": 1,
            # a resume that redoes an epoch whose checkpoint a killed run had written
            # overwrites it, instead of saving beside it as epoch=..-v1.ckpt
            "enable_version_counter": False,
            **user,
            "save_last": False,  # last.ckpt is the LastCheckpoint below, written every epoch
        }
        if "monitor" not in user and has_val:
            ck.setdefault("monitor", "val/loss")
        ck = _check_kwargs("train.checkpoint", ck, ModelCheckpoint.__init__)
        # best first, then last: last.ckpt then holds the best callback's state of this epoch,
        # and a kill between the two writes only leaves a best file the resumed run rewrites
        cbs.insert(0, ModelCheckpoint(**ck))
        if save_last:
            cbs.insert(1, last_checkpoint(ck["dirpath"]))
    if tc.heartbeat_every_n_steps:
        cbs.append(Heartbeat(tc.heartbeat_every_n_steps))
    # the LR monitor writes to the logger: without one it has nowhere to write
    if tc.lr_monitor and tc.logger != "none":
        cbs.append(LearningRateMonitor(logging_interval="step"))
    if tc.early_stopping is not None:
        es = {"monitor": "val/loss" if has_val else "train/loss_epoch", **tc.early_stopping}
        cbs.append(
            EarlyStopping(**_check_kwargs("train.early_stopping", es, EarlyStopping.__init__))
        )
    if tc.curriculum:
        stages = [
            {k: v for k, v in dataclasses.asdict(st).items() if v is not None}
            for st in tc.curriculum
        ]
        cbs.append(CurriculumCallback(stages, scores))
    return cbs


def build_logger(tc: TrainConfig, out: Path) -> Any:
    """CSV by default; TensorBoard or W&B when installed and asked for; False for none."""
    from lightning.pytorch import loggers

    if tc.logger == "none":
        return False
    if tc.logger == "csv":
        return loggers.CSVLogger(save_dir=str(out), name="logs")
    if tc.logger == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                "train.logger",
                "tensorboard",
                "csv or none (tensorboard is not installed)",
                "pip install knoblab[tensorboard]",
            ) from None
        return loggers.TensorBoardLogger(save_dir=str(out), name="logs")
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError(
            "train.logger",
            "wandb",
            "csv or none (wandb is not installed)",
            "pip install knoblab[wandb]",
        ) from None
    return loggers.WandbLogger(save_dir=str(out), project="knoblab")


def build_trainer(
    tc: TrainConfig, callbacks: list[L.Callback], logger: Any, out: Path
) -> L.Trainer:
    """A ``Trainer`` with every ``train.trainer`` key passed through unchanged."""
    quiet_cloud_tip()  # Lightning's cloud-logger advert: knoblab trains offline
    kwargs = _check_kwargs("train.trainer", tc.trainer, L.Trainer.__init__, _OWNED)
    kwargs.setdefault("accelerator", "cpu")
    _devices_from_torchrun(kwargs)
    _check_accelerator(kwargs["accelerator"])
    if tc.checkpoint is None:
        kwargs["enable_checkpointing"] = False
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            **kwargs,
            callbacks=callbacks,
            logger=logger,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=str(out),
            # the weighted sampler shards itself under DDP (same draw on every rank, own positions)
            use_distributed_sampler=tc.mixing != "weighted",
        )
    except (MisconfigurationException, ModuleNotFoundError) as exc:  # e.g. tpu without torch_xla
        # Lightning's reason is one sentence; name the section it came from
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        shown = {k: kwargs[k] for k in ("accelerator", "devices", "strategy") if k in kwargs}
        raise ConfigError(
            "train.trainer", shown, "Trainer arguments this machine can run", reason
        ) from None


def _devices_from_torchrun(kwargs: dict[str, Any]) -> None:
    """Under ``torchrun --nproc-per-node=N``, ``devices: 1`` (the YAML default) means N.

    Why: Lightning refuses ``devices=1`` in a world of N processes ("the product (1 * 1)
    does not match the world size") with a traceback on every rank, although torchrun
    already said how many processes there are. An explicit other value is left to Lightning.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    if world <= 1 or local < 1 or str(kwargs.get("devices", 1)) != "1":
        return
    kwargs["devices"] = local
    kwargs.setdefault("num_nodes", max(world // local, 1))
    if str(kwargs.get("strategy", "auto")) == "auto":
        kwargs["strategy"] = "ddp"


def _check_accelerator(accelerator: Any) -> None:
    """A GPU accelerator on a torch or machine without CUDA: one line, not Lightning's traceback."""
    if str(accelerator) not in ("gpu", "cuda"):
        return
    if not torch.backends.cuda.is_built():
        raise ConfigError(
            "train.trainer.accelerator", accelerator, "cpu or auto: this torch has no CUDA"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            "train.trainer.accelerator", accelerator, "cpu or auto: no CUDA device is visible here"
        )


def _resume_path(tc: TrainConfig, out: Path) -> str | None:
    if tc.resume is None:
        return None
    path = out / "checkpoints" / "last.ckpt" if tc.resume == "last" else Path(tc.resume)
    if path.is_dir():
        raise CheckpointError(
            f"train.resume={tc.resume!r} is invalid: allowed is a checkpoint file or 'last' "
            f"({path} is a directory)"
        )
    if not path.is_file():
        raise CheckpointError(
            f"train.resume={tc.resume!r} is invalid: allowed is an existing checkpoint file or 'last' "
            f"({path} not found)"
        )
    # read it once before Lightning does: a file that is no checkpoint, a damaged knoblab
    # block or a checkpoint without Lightning's training state is one line, not a traceback
    ckpt = read_checkpoint(path, warn=False)
    missing = [k for k in ("pytorch-lightning_version", "state_dict", "loops") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"train.resume={str(path)!r} is invalid: allowed is a training checkpoint of "
            f"`knoblab train` (it has no {missing[0]!r}; a weights file goes to train.init_weights)"
        )
    return str(path)


def _checkpoint_paths(trainer: L.Trainer) -> tuple[Path | None, Path | None]:
    """(last.ckpt, the best checkpoint) of a finished run; None where none was written."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    last = best = None
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, LastCheckpoint):
            last = Path(cb.path) if cb.path else None
        elif isinstance(cb, ModelCheckpoint) and best is None:
            best = Path(cb.best_model_path) if cb.best_model_path else None
            last = last or (Path(cb.last_model_path) if cb.last_model_path else None)
    return last, best


def run_training(cfg: Mapping[str, Any], callbacks: Sequence[L.Callback] = ()) -> TrainResult:
    """Train as ``cfg`` says (sections ``model``, ``train`` and ``seed``); returns the result.

    ``callbacks`` are added to the ones the config asks for (e.g. a metrics recorder).

    Raises:
        ConfigError: a bad key or value (one line naming it).
        CheckpointError: ``train.resume`` / ``train.init_weights`` missing or of another model.
    """
    data = plain(cfg)
    unknown = set(data) - {"model", "train", "seed", "dataset", "hydra"}
    if unknown:
        k = sorted(unknown)[0]
        raise UnknownKeyError(k, data[k], ["model", "train", "seed"])
    tc = to_dataclass(data.get("train"), TrainConfig, "train")
    model = dict(data.get("model") or {})
    bad = set(model) - {"kind", "config"}
    if bad:
        k = sorted(bad)[0]
        raise UnknownKeyError(f"model.{k}", model[k], ["kind", "config"])
    seed = int(data.get("seed", 0))
    out = ensure_dir(tc.output_dir, "train.output_dir")
    # temp files of checkpoint writers killed mid-write (full size, never renamed); a live
    # writer's (another run into this folder) is kept
    stale = remove_stale_tmp(out / "checkpoints")
    if stale:
        log.info("removed %d half-written checkpoint(s) of a killed run: %s", len(stale), stale)
    resume = _resume_path(tc, out)

    if tc.num_threads:
        # On a shared CPU, intra-op threads that outnumber free cores spin and wait: one
        # thread per process trained the reference model 3-17x faster on the 2-core CI box.
        torch.set_num_threads(tc.num_threads)
    L.seed_everything(seed, workers=True, verbose=False)
    module = KnobLabModule(
        model.get("kind", "reference"),
        model.get("config") or {},
        dataclasses.asdict(tc.optim),
        tc.compile,
        tc.init_weights,
    )
    dm, scores = build_datamodule(tc, module.task, seed)
    all_callbacks = [*build_callbacks(tc, out, scores, has_val=bool(tc.val_datasets)), *callbacks]
    trainer = build_trainer(tc, all_callbacks, build_logger(tc, out), out)
    with warnings.catch_warnings():
        # Lightning's pytree helper builds torch's deprecated LeafSpec (a FutureWarning per
        # run on recent torch); nothing a knoblab user can act on.
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning
        )
        if resume is not None:  # a resumed run's folder holds its checkpoints, of course
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        # Lightning turns Ctrl-C into sys.exit(1) after its own shutdown; give it back as
        # the KeyboardInterrupt it was, so the CLI prints its one line and exits 130
        with fit_interrupt_as_keyboard_interrupt(trainer):
            trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)

    last, best = _checkpoint_paths(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    export = None
    if tc.export and trainer.is_global_zero:
        extra = {"seed": seed, "metrics": metrics, "train": dataclasses.asdict(tc)}
        own_export = module.task.extra.get("export")
        if own_export is not None:  # the family's own weights format (its loader reads it)
            export = own_export(module.model, module.task.config, tc.export, extra)
        else:
            export, _ = save_weights(
                module.model, module.task.kind, module.task.config, tc.export, extra
            )
        log.info("exported weights to %s", export)
    return TrainResult(out, last, best, metrics, module, trainer, export)
