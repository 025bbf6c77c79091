"""What knoblab relies on in safetensors beyond its documented API.

``safetensors.torch`` finds tensors that share storage (tied embeddings) with two
private helpers; ``save_file`` refuses shared tensors, so the weights export keeps one
name per storage and the loader gives every tied name the stored tensor.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def shared_tensor_groups(state: Mapping[str, torch.Tensor]) -> list[set[str]]:
    """Groups of names in ``state`` whose tensors share storage (``_find_shared_tensors``)."""
    from safetensors.torch import _find_shared_tensors

    return [set(g) for g in _find_shared_tensors(dict(state))]


def duplicate_names(state: Mapping[str, torch.Tensor]) -> set[str]:
    """Names to drop so that each shared storage is saved once (``_remove_duplicate_names``)."""
    from safetensors.torch import _remove_duplicate_names

    return {n for names in _remove_duplicate_names(dict(state)).values() for n in names}
