"""The adapter protocol: how a model declares its knobs and runs its stages.

The sweep runner drives any model through these calls, timing each stage::

    adapter.apply_knobs({"tier": "high", "top_k": 2, "num_active_blocks": 4})
    prepared = adapter.preprocess(sample)           # not timed: CPU-side preprocessing
    with timer.stage("vision"):  vis = adapter.encode_vision(prepared)
    with timer.stage("prefill"): state = adapter.prefill(prepared, vis)   # yields token 1
    with timer.stage("decode"):  gen = adapter.decode(state, max_new_tokens)

NOTE: ``prefill`` produces the first output token (as in vLLM, it ends at TTFT), so
``decode`` produces tokens 2..n and ``T_decode_per_token = T_LLM_decode / (n - 1)``
(vLLM's TPOT), defined only when n > 1.

Batched inference (optional): an adapter that also has the methods of
:class:`BatchedAdapter` runs several samples as one padded batch, one decode step at
a time, so that a profiler can time each step (the inter-token latency)::

    batch = adapter.collate(prepared_list)                    # not timed: padding
    with timer.stage("vision"):  vis = adapter.encode_vision_batch(batch)
    with timer.stage("prefill"): state = adapter.prefill_batch(batch, vis, max_new_tokens)
    while not all(state.finished):
        with timer.stage("decode"): adapter.decode_step_batch(state)   # one token per active sample
    gens = adapter.finish_batch(state)

Each sample's tokens equal its batch-1 tokens (padding must not change answers). An
adapter without these methods still runs at any batch size:
``knoblab.profiling.batch.measure_batch`` then runs the samples one after another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class KnobSpec:
    """One knob a model exposes.

    Attributes:
        name: the knob's config name (``tier``, ``vision_tokens``, ``top_k``, ``num_active_blocks``).
        values: the allowed values, in increasing cost order.
        default: the value the model runs with when the knob is not set.
        doc: one line on what the knob does for this model.
    """

    name: str
    values: tuple[Any, ...]
    default: Any
    doc: str = ""


@dataclass
class Prepared:
    """A preprocessed sample: model inputs plus the counts the records need.

    ``inputs`` is model specific. The other fields follow seed 002's per-sample record:
    crops and tiling selected for this image, theoretical vision tokens
    ``(crops + 1) * tokens_per_crop``, actual (valid) vision tokens, and text tokens.
    """

    inputs: Any
    input_text_tokens: int
    actual_vision_tokens: int = 0
    theoretical_vision_tokens: int = 0
    target_vision_tokens: int | None = None
    num_crops: int | None = None
    tiling: tuple[int, int] | None = None
    image_size: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    """The decoded answer: all output token ids (the first one from prefill) and the text."""

    token_ids: list[int]
    text: str

    @property
    def output_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class BatchState:
    """Where a batch's greedy decoding stands: per sample the tokens so far and whether it is done.

    ``inner`` is the model's own state (KV cache, masks, positions). A sample is finished
    once it produced EOS, ``max_new_tokens`` tokens, or the model's longest sequence;
    :meth:`push` applies the first two rules, the adapter the third.
    """

    token_ids: list[list[int]]
    finished: list[bool]
    max_new_tokens: int
    inner: Any = None

    @classmethod
    def start(cls, size: int, max_new_tokens: int, inner: Any = None) -> BatchState:
        """An empty state for ``size`` samples (no token yet)."""
        return cls([[] for _ in range(size)], [False] * size, max(1, int(max_new_tokens)), inner)

    def active(self) -> list[int]:
        """Indices of the samples still decoding."""
        return [i for i, done in enumerate(self.finished) if not done]

    def push(self, i: int, token: int, eos: bool) -> None:
        """Append sample ``i``'s next token; it finishes at EOS or at the token cap."""
        self.token_ids[i].append(int(token))
        if eos or len(self.token_ids[i]) >= self.max_new_tokens:
            self.finished[i] = True


@runtime_checkable
class ModelAdapter(Protocol):
    """A model under test. ``knobs()`` lists what ``apply_knobs`` accepts."""

    name: str
    device: str
    dtype: str

    def knobs(self) -> Mapping[str, KnobSpec]:
        """The knobs this model has and their allowed values."""
        ...

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Set knobs in place (no reload). Returns the effective settings to record,
        e.g. ``{"top_k": 2, "num_active_blocks": 4, "num_total_blocks": 8,
        "active_block_indices": [0, 1, 2, 3]}``. Raises ``ConfigError`` for an unknown
        knob or a value outside ``knobs()[name].values``."""
        ...

    def preprocess(self, sample: Any) -> Prepared:
        """Turn a ``knoblab.data.Sample`` into model inputs (raises ``DataError`` on a bad image)."""
        ...

    def encode_vision(self, prepared: Prepared) -> Any:
        """Vision encoder + projector."""
        ...

    def prefill(self, prepared: Prepared, vision: Any) -> Any:
        """First forward over image features and prompt; returns a decode state holding token 1."""
        ...

    def decode(self, state: Any, max_new_tokens: int) -> Generation:
        """Greedy decode with the KV cache until EOS or ``max_new_tokens`` tokens in all."""
        ...


@runtime_checkable
class BatchedAdapter(Protocol):
    """The optional batched stages (see the module docstring); all five or none."""

    def collate(self, prepared: Sequence[Prepared]) -> Any:
        """Pad and stack preprocessed samples into one model batch (not timed)."""
        ...

    def encode_vision_batch(self, batch: Any) -> Any:
        """Vision encoder + projector for every image of the batch."""
        ...

    def prefill_batch(self, batch: Any, vision: Any, max_new_tokens: int) -> BatchState:
        """One forward over every padded prompt; each sample's token 1 is pushed."""
        ...

    def decode_step_batch(self, state: BatchState) -> None:
        """One greedy step: one more token for every sample not yet finished."""
        ...

    def finish_batch(self, state: BatchState) -> list[Generation]:
        """Each sample's ``Generation``, in batch order."""
        ...


#: The batched stages of :class:`BatchedAdapter`.
BATCHED_STAGES: tuple[str, ...] = (
    "collate",
    "encode_vision_batch",
    "prefill_batch",
    "decode_step_batch",
    "finish_batch",
)


def supports_batching(adapter: Any) -> bool:
    """Whether ``adapter`` has every batched stage of :class:`BatchedAdapter`.

    Checked by attribute rather than ``isinstance(adapter, BatchedAdapter)``: a
    runtime-checkable Protocol's ``isinstance`` costs ~30 us, and the runner asks once per
    unit of work (``bench_overhead``).
    """
    return all(callable(getattr(adapter, name, None)) for name in BATCHED_STAGES)


def check_knob(specs: Mapping[str, KnobSpec], name: str, value: Any, model: str) -> None:
    """Raise a one-line ``ConfigError`` unless ``name=value`` is allowed by ``specs``."""
    from knoblab.errors import ConfigError, closest

    if name not in specs:
        close = closest(name, specs)
        raise ConfigError(
            f"knobs.{name}",
            value,
            f"a knob of model {model!r}: {', '.join(specs) or 'none'}",
            f"did you mean {close}?" if close else None,
        )
    allowed: Sequence[Any] = specs[name].values
    if value not in allowed:
        raise ConfigError(f"knobs.{name}", value, f"one of {list(allowed)} for model {model!r}")
