"""``ReferenceConfig``: the hyper-parameters of the built-in reference VLM.

Sized so that a high-tier sample answers in well under 100 ms on a 2-core CPU and the
model trains on shapes-vqa in about 26 minutes there (see ``docs``/README).

Example:
    >>> cfg = ReferenceConfig()
    >>> cfg.tokens_per_crop
    9
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from knoblab.errors import ConfigError


def _default_tiers() -> dict[str, tuple[int, int]]:
    from knoblab.models.tiling import TIERS

    return dict(TIERS)


@dataclass
class ReferenceConfig:
    """The reference VLM's architecture (saved next to its weights as JSON).

    Attributes:
        vocab_size: word-level vocabulary size (the shipped ``vocab.json``).
        crop_size: side of one crop in pixels (global crop and tiles alike).
        patch_size: side of one patch; ``(crop_size // patch_size) ** 2`` tokens per crop
            (a multiple of 4, the convolutional stem's stride).
        stem_channels: output channels of the two stride-2 convolutions of the stem.
        vision_dim: width of the patch encoder.
        vision_layers: transformer layers of the patch encoder (attention within a crop).
        vision_heads: attention heads of the patch encoder.
        d_model: width of the language model.
        n_heads: attention heads of the language model.
        n_layers: decoder blocks of the language model (``num_active_blocks`` <= this).
        num_experts: experts per MoE feed-forward layer.
        expert_hidden: hidden width of one expert.
        top_k: experts per token by default (the ``top_k`` knob overrides it).
        max_seq_len: longest sequence (learned positions); vision + text must fit.
        max_tiles: most tiles an image may be cut into (the ``high`` tier's top).
        pos_frequencies: Fourier frequencies encoding a patch's position in the image.
        tiers: tier name -> (min_crops, max_crops).
        patch_classes: classes of the training-only patch head (shapes-vqa: none + 5 colours x
            3 shapes + 10 code characters; 16 in ``reference-v1``, which had no codes).
        answer_steps: learned embeddings of the answer step (0 at ``<sep>``, 1 at the first
            answer token, ...; steps past the last share it), added to ``<sep>`` and the
            answer tokens. They tell the decoder which character of a code it is reading:
            absolute positions cannot, as the vision token count before the answer varies
            with the tier. 0: none (``reference-v1``, whose answers were one word).
        lm_vision_pos: add a linear map of each vision token's Fourier position (where its
            patch lies in the image) to its LM embedding, so that an answer step can pick
            the character at its place in the line (the encoder's own position encoding
            is mixed into the patch content by then). False in ``reference-v1``.
    """

    vocab_size: int = 79
    crop_size: int = 24
    patch_size: int = 8
    stem_channels: tuple[int, int] = (32, 48)
    vision_dim: int = 96
    vision_layers: int = 1
    vision_heads: int = 4
    d_model: int = 96
    n_heads: int = 4
    n_layers: int = 4
    num_experts: int = 4
    expert_hidden: int = 128
    top_k: int = 2
    max_seq_len: int = 192
    max_tiles: int = 15
    pos_frequencies: int = 6
    tiers: dict[str, tuple[int, int]] = field(default_factory=_default_tiers)
    patch_classes: int = 26
    answer_steps: int = 16
    lm_vision_pos: bool = True

    def __post_init__(self) -> None:
        if self.crop_size % self.patch_size:
            raise ConfigError(
                "crop_size", self.crop_size, f"a multiple of patch_size={self.patch_size}"
            )
        if self.d_model % self.n_heads:
            raise ConfigError("d_model", self.d_model, f"a multiple of n_heads={self.n_heads}")
        if self.vision_dim % self.vision_heads:
            raise ConfigError(
                "vision_dim", self.vision_dim, f"a multiple of vision_heads={self.vision_heads}"
            )
        if self.answer_steps < 0:
            raise ConfigError("answer_steps", self.answer_steps, "an integer >= 0")
        if not 1 <= self.top_k <= self.num_experts:
            raise ConfigError("top_k", self.top_k, f"1..num_experts={self.num_experts}")
        self.tiers = {k: (int(v[0]), int(v[1])) for k, v in self.tiers.items()}
        self.stem_channels = (int(self.stem_channels[0]), int(self.stem_channels[1]))
        need = (self.max_tiles + 1) * self.tokens_per_crop + 32
        if self.max_seq_len < need:
            raise ConfigError(
                "max_seq_len", self.max_seq_len, f">= {need} (all crops plus a question)"
            )

    @property
    def tokens_per_crop(self) -> int:
        """Vision tokens one crop yields: ``(crop_size // patch_size) ** 2``."""
        return (self.crop_size // self.patch_size) ** 2

    @property
    def patches_per_side(self) -> int:
        return self.crop_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tiers"] = {k: list(v) for k, v in self.tiers.items()}
        d["stem_channels"] = list(self.stem_channels)
        return d

    @classmethod
    def from_saved(cls, d: dict[str, Any]) -> ReferenceConfig:
        """The config of a saved model: ``from_dict``, except that a whole ``reference-v1``
        config (every field it had, none added since) keeps v1's architecture (no answer
        steps, no LM vision positions) instead of taking today's defaults for them."""
        if isinstance(d, dict) and set(d) == V1_FIELDS:
            d = {**d, "answer_steps": 0, "lm_vision_pos": False}
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceConfig:
        from knoblab.config import to_dataclass

        return to_dataclass(d, cls, "reference_config")


#: The fields of a ``reference-v1`` config (``to_dict`` before the codes).
V1_FIELDS = frozenset(
    f.name
    for f in dataclasses.fields(ReferenceConfig)
    if f.name not in ("answer_steps", "lm_vision_pos")
)
