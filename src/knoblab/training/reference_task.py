"""The reference VLM as a ``TrainTask``: next-token loss on the answer tokens, knobs varied in training.

Config (``model.config`` of ``knoblab train``)::

    arch: {}                        # ReferenceConfig fields (d_model, n_layers, ...); {} = defaults
    tiers: {low: 1, medium: 1, high: 2}   # vision tier of each batch, drawn with these weights
    top_k: [1, 2, 3, 4]             # experts per token of each batch, drawn uniformly (null: model default)
    aux_loss_coef: 0.01             # MoE load-balancing loss weight
    patch_loss_coef: 0.5            # training-only patch loss (which object each patch holds)
    relevance_loss_coef: 0.0        # training-only relevance loss (which vision tokens the question names)

Why vary the knobs while training: the profiler sweeps tiers and ``top_k`` at
inference, so every setting must be one the model has seen; otherwise "more experts"
could lose accuracy only because the model never ran with them. Active blocks are not
varied: the model is trained with all blocks, as the seeds' models are, so that
dropping blocks costs accuracy the way it does for real checkpoints.

NOTE: one tier per *batch* (not per sample): the batch is padded to its longest
sequence, so mixing tiers inside a batch would pad every low-tier sample to high-tier
length. The tier and ``top_k`` of a batch are a pure function of its sample ids, so a
resumed run draws the same ones.

Example:
    >>> task = build_task({"arch": {"n_layers": 2}})
    >>> task.kind, task.model.cfg.n_layers
    ('reference', 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from knoblab.errors import ConfigError
from knoblab.sampling.permutation import mix_key
from knoblab.training.tasks import TrainTask

DEFAULTS: dict[str, Any] = {
    "arch": {},
    "tiers": {"low": 1.0, "medium": 1.0, "high": 2.0},
    "top_k": None,
    "aux_loss_coef": 0.01,
    "patch_loss_coef": 0.5,
    "relevance_loss_coef": 0.0,
}


def _draw(options: Sequence[Any], weights: Sequence[float], key: int) -> Any:
    """One of ``options`` by ``weights``, from a 64-bit key (deterministic)."""
    total = float(sum(weights))
    u = (key >> 11) / float(1 << 53) * total
    acc = 0.0
    for opt, w in zip(options, weights, strict=True):
        acc += w
        if u < acc:
            return opt
    return options[-1]


class ReferenceCollate:
    """Picklable collate: one tier per batch, drawn from the batch's sample ids."""

    def __init__(self, arch: Any, tiers: Mapping[str, float]):
        self.arch = arch
        self.names = list(tiers)
        self.weights = [float(tiers[n]) for n in self.names]

    def __call__(self, samples: list[Any]) -> Any:
        from knoblab.models.reference.batch import collate

        key = mix_key(0x7135, *[int(s.sample_id) for s in samples[:8]], len(samples))
        batch = collate(samples, tier=_draw(self.names, self.weights, key), cfg=self.arch)
        return batch


class ReferenceLoss:
    """``loss(model, batch)``: answer-token cross-entropy at a ``top_k`` drawn per batch."""

    def __init__(
        self,
        top_k: Sequence[int] | None,
        aux_loss_coef: float,
        patch_loss_coef: float,
        relevance_loss_coef: float = 0.0,
    ):
        self.top_k = list(top_k) if top_k else None
        self.aux_loss_coef = aux_loss_coef
        self.patch_loss_coef = patch_loss_coef
        self.relevance_loss_coef = relevance_loss_coef

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        k = None
        if self.top_k and model.training:
            k = _draw(
                self.top_k,
                [1.0] * len(self.top_k),
                mix_key(0x70B, *batch.sample_ids[:8], len(batch)),
            )
        return model.loss(
            batch,
            top_k=k,
            aux_loss_coef=self.aux_loss_coef,
            patch_loss_coef=self.patch_loss_coef,
            relevance_loss_coef=self.relevance_loss_coef,
        )


def export(model: nn.Module, config: Mapping[str, Any], path: Any, extra: Mapping[str, Any]) -> Any:
    """Write the weights the way ``knoblab.models.reference.load_reference`` reads them.

    ``<stem>.safetensors`` + ``<stem>.json`` (the architecture) via ``save_reference``,
    and ``<stem>.recipe.json``: how they were trained (seed, config, final metrics).
    """
    import json
    from pathlib import Path

    from knoblab.models.reference.weights import save_reference
    from knoblab.training.checkpoint import atomic_write_bytes

    out = save_reference(model, path)
    recipe = {"model": {"kind": "reference", "config": dict(config)}, **dict(extra)}
    text = json.dumps(recipe, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(text.encode(), Path(out).with_suffix(".recipe.json"))
    return Path(out)


def build_task(config: dict[str, Any]) -> TrainTask:
    """The reference VLM's ``TrainTask`` (see the module docstring for the config)."""
    from knoblab.models.reference.config import ReferenceConfig
    from knoblab.models.reference.model import ReferenceVLM

    unknown = set(config) - set(DEFAULTS)
    if unknown:
        from knoblab.errors import UnknownKeyError

        k = sorted(unknown)[0]
        raise UnknownKeyError(f"model.config.{k}", config[k], DEFAULTS)
    cfg = {**DEFAULTS, **config}
    # from_saved: a whole reference-v1 architecture (a v1 checkpoint's) stays v1's.
    arch = ReferenceConfig.from_saved(dict(cfg["arch"] or {}))
    tiers = dict(cfg["tiers"] or {"high": 1.0})
    for name, w in tiers.items():
        if name not in arch.tiers:
            raise ConfigError(
                f"model.config.tiers.{name}", w, f"a tier of the model: {', '.join(arch.tiers)}"
            )
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w <= 0:
            raise ConfigError(f"model.config.tiers.{name}", w, "a number > 0")
    top_k = cfg["top_k"]
    if top_k is not None:
        for k in top_k:
            if not isinstance(k, int) or not 1 <= k <= arch.num_experts:
                raise ConfigError(
                    "model.config.top_k", top_k, f"a list of integers in 1..{arch.num_experts}"
                )
    plain_cfg = {
        "arch": arch.to_dict(),
        "tiers": tiers,
        "top_k": top_k,
        "aux_loss_coef": float(cfg["aux_loss_coef"]),
        "patch_loss_coef": float(cfg["patch_loss_coef"]),
        "relevance_loss_coef": float(cfg["relevance_loss_coef"]),
    }
    model = ReferenceVLM(arch)
    # A training-only head whose loss is off takes no part in the loss: freeze it, or DDP
    # fails on its first step with "parameters that were not used in producing the loss"
    # (`torchrun ... train=smoke strategy=ddp`: relevance_loss_coef is 0 there). Frozen
    # parameters get no gradient either way, so single-process training is unchanged
    # (AdamW skips a parameter whose grad is None) and checkpoints keep the same keys.
    for head, coef in (
        ("patch_head", "patch_loss_coef"),
        ("relevance_head", "relevance_loss_coef"),
    ):
        if not plain_cfg[coef]:
            getattr(model, head).requires_grad_(False)
    return TrainTask(
        kind="reference",
        config=plain_cfg,
        model=model,
        collate=ReferenceCollate(arch, tiers),
        loss=ReferenceLoss(
            top_k,
            float(cfg["aux_loss_coef"]),
            float(cfg["patch_loss_coef"]),
            float(cfg["relevance_loss_coef"]),
        ),
        batch_size=len,
        extra={"export": export},
    )
