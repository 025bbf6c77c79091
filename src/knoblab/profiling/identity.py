"""A sweep's identity, and the refusal to mix two sweeps in one output directory.

``sweep.json`` holds the identity: the model (name, config keys naming the weights, a
fingerprint of the weights), the dataset section, device, dtype, ``max_new_tokens`` and
the sample ids of the plan. A rerun into the directory must match it; knob lists and
designs may differ (they add configurations to the same sweep).

Example:
    >>> identity_diff({"model": {"name": "a"}}, {"model": {"name": "b"}})
    "model differs: {'name': 'a'} there, {'name': 'b'} now"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from knoblab.dtypes import ALIASES
from knoblab.errors import DataError, KnobLabError
from knoblab.models.adapter import ModelAdapter
from knoblab.profiling import records as rec


# -- identity ---------------------------------------------------------------------------
def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    for key in ("model", "dataset", "device", "dtype", "max_new_tokens"):
        if _comparable(key, old.get(key)) != _comparable(key, new.get(key)):
            return f"{key} differs: {old.get(key)!r} there, {new.get(key)!r} now"
    a, b = old.get("sample_ids") or [], new.get("sample_ids") or []
    if a != b:
        if len(a) != len(b):
            return f"samples differ: {len(a)} samples there, {len(b)} now"
        i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        return f"samples differ: position {i} is sample {a[i]!r} there, {b[i]!r} now"
    return None


def _comparable(key: str, value: Any) -> Any:
    """``value`` as identities compare it: dtypes by canonical name (old HF sweeps say bf16)."""
    if key == "dtype" and isinstance(value, str):
        return ALIASES.get(value, value)
    return value


def check_out_dir(out_dir: Path, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The existing sweep.json, or None; raises when the directory holds another sweep."""
    path = out_dir / "sweep.json"
    if not path.exists():
        if rec.load_records(out_dir):
            raise KnobLabError(
                f"run.output_dir={str(out_dir.parent)!r}: {out_dir} holds configuration records "
                "but no sweep.json, so they cannot be matched to this sweep; "
                "choose a new directory (run.output_dir=...)"
            )
        return None
    try:
        old = rec.read_sweep(out_dir) or {}
    except DataError as exc:
        raise KnobLabError(f"run.output_dir={str(out_dir.parent)!r}: {exc}") from None
    diff = identity_diff(old.get("identity", {}), identity)
    if diff:
        raise KnobLabError(
            f"run.output_dir={str(out_dir.parent)!r}: {out_dir} holds another sweep's results "
            f"({diff}); nothing was overwritten; choose a new directory, "
            f"e.g. run.output_dir={str(out_dir.parent)}-2"
        )
    return old


def weights_digest(module: torch.nn.Module, values_per_tensor: int = 64) -> str:
    """A cheap digest of a module's weights: names, shapes, dtypes and a few values each.

    NOTE: reads at most ``values_per_tensor`` values of each tensor (the first ones), so
    it costs milliseconds even for billions of parameters; it tells apart checkpoints
    (random init vs trained, another fine-tune), not two weights differing only deep
    inside one tensor. Meta tensors (offloaded shards) contribute their shape only.
    """
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.device.type != "meta" and t.numel():
            head = t.detach().reshape(-1)[:values_per_tensor].to("cpu", torch.float64)
            h.update(head.numpy().tobytes())
    return h.hexdigest()[:16]


def model_identity(adapter: ModelAdapter, model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Name, config keys naming the weights, and a fingerprint of the weights themselves.

    The fingerprint is ``adapter.fingerprint`` (attribute or method) when the adapter
    has one, else :func:`weights_digest` of ``adapter.model`` when that is a module: a
    results directory of random-init weights is then not mistaken for trained ones.
    """
    ident: dict[str, Any] = {"name": adapter.name}
    fingerprint = getattr(adapter, "fingerprint", None)
    if callable(fingerprint):
        fingerprint = fingerprint()
    if fingerprint is None and isinstance(getattr(adapter, "model", None), torch.nn.Module):
        fingerprint = weights_digest(adapter.model)  # type: ignore[attr-defined]
    if fingerprint is not None:
        ident["fingerprint"] = fingerprint
    for key in ("kind", "checkpoint", "path", "name_or_path", "weights"):
        if model_cfg.get(key) is not None:
            ident[key] = model_cfg[key]
    return ident
