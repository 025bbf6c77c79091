"""The sample record every dataset yields and every adapter consumes.

A dataset is any ``Sequence[Sample]`` with a ``name`` (the task name used in record
file names, e.g. ``shapes-vqa``) and a ``metric`` (a name in
``knoblab.data.scoring.METRICS``: ``"vqa"``, ``"anls"``, ``"exact_match"``, ...) naming
how predictions are scored. A sample may name its own metric in
``metadata["metric"]`` (a dataset that mixes question types: shapes-vqa scores its
"read the code" answers with ``anls``); ``sample_metric`` says which one applies.
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


def sample_metric(sample: Any, default: str) -> str:
    """The metric that scores ``sample``: its ``metadata["metric"]`` when it names one, else
    ``default`` (the dataset's ``metric``).

    Example:
        >>> sample_metric(Sample(0, "what is the code ?", ["42"], metadata={"metric": "anls"}), "vqa")
        'anls'
    """
    own = (getattr(sample, "metadata", None) or {}).get("metric")
    return own if isinstance(own, str) and own else default
