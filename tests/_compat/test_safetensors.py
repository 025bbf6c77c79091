"""Fails loudly when a safetensors release changes what ``knoblab._compat.safetensors`` uses."""

from __future__ import annotations

import torch

from knoblab._compat.safetensors import duplicate_names, shared_tensor_groups


def test_tied_tensors_are_grouped_and_one_name_is_kept():
    w = torch.zeros(3, 2)
    state = {"embed.weight": w, "head.weight": w, "other": torch.ones(2)}
    groups = shared_tensor_groups(state)
    assert {"embed.weight", "head.weight"} in groups
    dropped = duplicate_names(state)
    assert len(dropped) == 1 and dropped <= {"embed.weight", "head.weight"}
    assert "other" not in dropped
