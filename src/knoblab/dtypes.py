"""The one dtype vocabulary of knoblab: ``model.dtype``, ``hardware.dtype``, records.

Names are torch's own (``torch.bfloat16`` -> ``bfloat16``), the spelling a checkpoint's
``config.json`` uses too; records and ``sweep.json`` carry them. The short spellings of
the Hugging Face world (``bf16``, ``fp16``, ``fp32``) are accepted wherever a dtype is
configured and mean the same dtype.

NOTE: records written before this table by a Hugging Face model say ``bf16`` /
``fp32``; :func:`canonical_dtype` maps them, so a rerun into such a sweep's folder
matches its identity.

Example:
    >>> canonical_dtype("bf16")
    'bfloat16'
    >>> torch_dtype("float32")
    torch.float32
    >>> dtype_name(torch_dtype("fp16"))
    'float16'
"""

from __future__ import annotations

import torch

from knoblab.errors import ConfigError

__all__ = ["ALIASES", "DTYPES", "canonical_dtype", "dtype_name", "torch_dtype"]

#: Canonical name -> torch dtype.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

#: Short spellings accepted on input -> canonical name.
ALIASES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def canonical_dtype(name: object, key: str = "model.dtype") -> str:
    """The canonical name of ``name`` (a canonical name or an alias).

    Raises:
        ConfigError: ``name`` is neither; the message names ``key`` and the choices.
    """
    if isinstance(name, str):
        name = ALIASES.get(name, name)
        if name in DTYPES:
            return name
    allowed = ", ".join(f"{c} ({a})" for a, c in ALIASES.items())
    raise ConfigError(key, name, f"one of {allowed}")


def torch_dtype(name: object, key: str = "model.dtype") -> torch.dtype:
    """The torch dtype of ``name`` (see :func:`canonical_dtype`)."""
    return DTYPES[canonical_dtype(name, key)]


def dtype_name(dtype: torch.dtype) -> str:
    """The canonical name of a torch dtype (``str(dtype)`` without ``torch.`` for others)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    return str(dtype).removeprefix("torch.")
