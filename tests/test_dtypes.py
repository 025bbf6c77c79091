"""One dtype vocabulary (knoblab.dtypes): canonical names, aliases, one-line errors."""

from __future__ import annotations

import pytest
import torch

from knoblab.dtypes import ALIASES, DTYPES, canonical_dtype, dtype_name, torch_dtype
from knoblab.errors import ConfigError
from knoblab.profiling.identity import identity_diff


@pytest.mark.parametrize(
    ("given", "canonical", "dtype"),
    [
        ("float32", "float32", torch.float32),
        ("fp32", "float32", torch.float32),
        ("bfloat16", "bfloat16", torch.bfloat16),
        ("bf16", "bfloat16", torch.bfloat16),
        ("float16", "float16", torch.float16),
        ("fp16", "float16", torch.float16),
    ],
)
def test_names_and_aliases(given, canonical, dtype):
    assert canonical_dtype(given) == canonical
    assert torch_dtype(given) is dtype
    assert dtype_name(dtype) == canonical


@pytest.mark.parametrize("bad", ["int8", "BF16", "", None, 16])
def test_unknown_dtype_is_one_line_naming_the_key(bad):
    with pytest.raises(
        ConfigError, match=r"hardware.dtype=.* is invalid: allowed is one of float32"
    ):
        canonical_dtype(bad, "hardware.dtype")


def test_every_alias_names_a_canonical_dtype_and_other_dtypes_keep_torchs_name():
    assert set(ALIASES.values()) == set(DTYPES)
    assert dtype_name(torch.float64) == "float64"


def test_a_sweep_recorded_with_an_alias_matches_its_canonical_name():
    """Hugging Face sweeps written before the one vocabulary say bf16: a rerun still matches."""
    assert identity_diff({"dtype": "bf16"}, {"dtype": "bfloat16"}) is None
    assert identity_diff({"dtype": "bf16"}, {"dtype": "float32"}) == (
        "dtype differs: 'bf16' there, 'float32' now"
    )
