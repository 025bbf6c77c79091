"""``dataset.prompt``: the text put before and after every question of a dataset.

The model is asked ``pre + question + post``; an adapter with a chat template wraps that
text as the user turn (``HFAdapter.prompt``), so the instruction reaches the model the way
lmms-eval sends it. ``post: null`` (the default) means the dataset's default:

- lmms-eval's short-answer instruction, ``"\\nAnswer the question using a single word or
  phrase."`` (its VQAv2 / GQA / TextVQA ``post_prompt``,
  https://github.com/EvolvingLMMs-Lab/lmms-eval/blob/main/lmms_eval/tasks/vqav2/vqav2.yaml),
  for short-answer metrics (:data:`VQA_STYLE`: ``vqa``, ``exact_match``, ``anls`` and their
  variants) asked of an instruction-tuned model
  (an adapter whose ``instruction_tuned`` is true: a Hugging Face checkpoint with a
  chat template);
- nothing otherwise: the built-in reference model answers shapes-vqa in one word (or a code) already
  and knows no instruction words, so its accuracy never changes unless a prompt is set;
  ``format: shapes`` datasets default to no prompt for every model, as do
  ``edit_distance`` datasets (OCR pages carry their own question).

The prompt in effect is part of the sweep's identity (a sweep directory refuses a rerun
with another prompt) and of every record (``environment.prompt``).

Example:
    >>> p = resolve_prompt({"pre": "Look closely. "}, metric="vqa", instruction_tuned=True)
    >>> p.apply("what color is the square?")
    'Look closely. what color is the square?\\nAnswer the question using a single word or phrase.'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from knoblab.config import to_dataclass
from knoblab.data.sample import Sample

#: lmms-eval's ``post_prompt`` of its short-answer VQA tasks.
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
#: Metrics whose datasets get :data:`SHORT_ANSWER` by default: the short-answer scorers
#: lmms-eval pairs with it (VQAv2, GQA, TextVQA, DocVQA/ANLS). ChartQA's relaxed accuracy
#: is left out: lmms-eval asks it "Answer the question with a single word." instead.
VQA_STYLE = ("vqa", "vqa_lenient", "exact_match", "exact_match_normalized", "anls")


@dataclass(frozen=True)
class PromptConfig:
    """``dataset.prompt``: text around every question."""

    pre: str = ""  # put before the question
    post: str | None = None  # put after it; null = the dataset's default (module docstring)


@dataclass(frozen=True)
class Prompt:
    """The prompt in effect: ``pre + question + post``."""

    pre: str = ""
    post: str = ""

    def apply(self, question: str) -> str:
        """``question`` with the text around it."""
        return f"{self.pre}{question}{self.post}"

    def as_dict(self) -> dict[str, str]:
        """``{"pre": ..., "post": ...}`` for records and the sweep identity."""
        return {"pre": self.pre, "post": self.post}

    def __bool__(self) -> bool:
        return bool(self.pre or self.post)


def resolve_prompt(
    cfg: Mapping[str, Any] | None,
    *,
    metric: str,
    instruction_tuned: bool,
    fmt: str = "",
) -> Prompt:
    """The prompt in effect for ``dataset.prompt`` = ``cfg`` (see the module docstring).

    Raises:
        ConfigError: ``dataset.prompt`` is not a mapping of ``pre`` / ``post`` strings.
    """
    c = to_dataclass(cfg or {}, PromptConfig, "dataset.prompt")
    post = c.post
    if post is None:
        default = instruction_tuned and metric in VQA_STYLE and fmt != "shapes"
        post = SHORT_ANSWER if default else ""
    return Prompt(pre=c.pre, post=post)


def prompt_for(dataset_cfg: Mapping[str, Any] | None, dataset: Any, adapter: Any) -> Prompt:
    """The prompt in effect for ``dataset`` (built from ``dataset_cfg``) asked of ``adapter``."""
    section = dict(dataset_cfg or {})
    return resolve_prompt(
        section.get("prompt"),
        metric=str(getattr(dataset, "metric", "exact_match")),
        instruction_tuned=bool(getattr(adapter, "instruction_tuned", False)),
        fmt=str(section.get("format") or "shapes"),
    )


class PromptedDataset:
    """``dataset`` whose samples carry ``prompt.apply(question)`` as their question.

    NOTE: every other attribute (``name``, ``metric``, ``skipped`` ...) is the wrapped
    dataset's; a record's per-sample ``metadata.question`` is what the model was asked.
    """

    def __init__(self, dataset: Any, prompt: Prompt):
        self.dataset = dataset
        self.prompt = prompt

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        return dataclasses.replace(sample, question=self.prompt.apply(sample.question))

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def with_prompt(dataset: Any, prompt: Prompt) -> Any:
    """``dataset`` asking every question with ``prompt`` (itself when the prompt is empty)."""
    if isinstance(dataset, PromptedDataset):
        dataset = dataset.dataset
    return PromptedDataset(dataset, prompt) if prompt else dataset
