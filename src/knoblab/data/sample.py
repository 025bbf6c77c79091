"""The sample record every dataset yields and every adapter consumes.

A dataset is any ``Sequence[Sample]`` with a ``name`` (the task name used in record
file names, e.g. ``shapes-vqa``) and a ``metric`` (a name in
``knoblab.data.scoring.METRICS``: ``"vqa"``, ``"anls"``, ``"exact_match"``, ...) naming
how predictions are scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Sample:
    """One question about one image.

    ``image`` is a ``PIL.Image.Image`` or a path to an image file; adapters open paths
    lazily so that a corrupt file fails inside that sample's measurement only.
    """

    sample_id: int
    question: str
    answers: list[str]
    image: Any = None
    image_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VQADataset(Protocol):
    """What the sweep runner and the training data module need from a dataset."""

    name: str
    metric: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...
