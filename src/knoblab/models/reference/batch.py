"""Training batches for the reference VLM: ``collate(samples, ...)`` -> ``Batch``.

``collate`` tiles every image under the given tier (or target vision tokens), cuts the
crops, and tokenises ``question`` and the answer (the most frequent of ``answers``).
Use it as a ``DataLoader`` ``collate_fn`` (``functools.partial`` keeps it picklable
for worker processes) and feed the result to ``ReferenceVLM.loss``.

NOTE: with a list of tiers, each sample gets one of them chosen by a hash of its
``sample_id``: the same sample always gets the same tier, and tiers are mixed inside a
batch.

Example:
    >>> from functools import partial
    >>> from torch.utils.data import DataLoader
    >>> from knoblab.data.shapes import ShapesVQA
    >>> from knoblab.models.reference.model import ReferenceVLM
    >>> model = ReferenceVLM()
    >>> loader = DataLoader(ShapesVQA(8), batch_size=4, collate_fn=partial(collate, tier=["low", "high"]))
    >>> loss = model.loss(next(iter(loader)), top_k=2, num_active_blocks=4)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from knoblab.models.reference.config import ReferenceConfig
from knoblab.models.reference.preprocess import plan_image, prepare_image
from knoblab.models.reference.tokenizer import WordTokenizer
from knoblab.models.reference.vocab import CODE_CHARS, COLORS, SHAPES


@dataclass
class Batch:
    """A collated batch (crops of all samples concatenated, text as id lists).

    Attributes:
        pixels: ``(sum of crops, 3, crop, crop)``, each sample's global crop first.
        positions: ``(sum of crops, tokens_per_crop, 2)`` patch centres in their image.
        is_tile: ``(sum of crops,)`` 0 for a global crop, 1 for a tile.
        valid: ``(sum of crops * tokens_per_crop,)`` True for patches that reach the LM.
        crop_counts: crops per sample, global crop included.
        prompt_ids: per sample, the question's ids followed by ``<sep>``.
        answer_ids: per sample, the answer's ids followed by ``<eos>``.
        sample_ids: per sample, ``Sample.sample_id``.
        patch_labels: ``(sum of crops * tokens_per_crop,)`` long, the object class whose
            centre lies in each patch (0: none; -100: unknown or invalid), or None when no
            sample carries shapes-vqa ``objects`` metadata. Used by the patch loss only.
        relevance_labels: ``(sum of valid vision tokens,)`` long, per vision token that
            reaches the LM: 1 when its patch holds the centre of the object the question
            names first, 2 the object it names second (relative position), else 0; None
            without shapes-vqa metadata. Used by the relevance loss only.
    """

    pixels: torch.Tensor
    positions: torch.Tensor
    is_tile: torch.Tensor
    valid: torch.Tensor
    crop_counts: list[int]
    prompt_ids: list[list[int]]
    answer_ids: list[list[int]]
    sample_ids: list[int]
    patch_labels: torch.Tensor | None = None
    relevance_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.crop_counts)

    def to(self, device: Any) -> Batch:
        return Batch(
            self.pixels.to(device),
            self.positions.to(device),
            self.is_tile.to(device),
            self.valid.to(device),
            self.crop_counts,
            self.prompt_ids,
            self.answer_ids,
            self.sample_ids,
            None if self.patch_labels is None else self.patch_labels.to(device),
            None if self.relevance_labels is None else self.relevance_labels.to(device),
        )


def _pick(tier: str | Sequence[str], sample_id: int) -> str:
    if isinstance(tier, str):
        return tier
    from knoblab.sampling.permutation import mix_key

    return list(tier)[mix_key(sample_id, 0x71E2) % len(tier)]


def collate(
    samples: Sequence[Any],
    *,
    tier: str | Sequence[str] | None = "high",
    vision_tokens: int | None = None,
    cfg: ReferenceConfig | None = None,
    tokenizer: WordTokenizer | None = None,
) -> Batch:
    """Collate ``knoblab.data.Sample`` objects (PIL images) into a ``Batch``.

    Exactly one of ``tier`` (a name, or a list to mix) and ``vision_tokens`` is used;
    ``vision_tokens`` wins when given.
    """
    cfg = cfg or ReferenceConfig()
    tokenizer = tokenizer or _default_tokenizer()
    if len(tokenizer) > cfg.vocab_size:  # weights trained on fewer words (reference-v1)
        tokenizer = tokenizer.truncated(cfg.vocab_size)
    pixels, positions, is_tile, valid, counts, prompts, answers, ids = [], [], [], [], [], [], [], []  # fmt: skip
    labels: list[torch.Tensor] = []
    relevance: list[torch.Tensor] = []
    any_labels = False
    for s in samples:
        img = s.image
        t = None if vision_tokens is not None else _pick(tier or "high", int(s.sample_id))
        plan = plan_image(img, cfg, tier=t, vision_tokens=vision_tokens)
        vi = prepare_image(img, plan, cfg)
        n = vi.pixels.shape[0]
        pixels.append(vi.pixels)
        positions.append(vi.positions)
        is_tile.append(torch.tensor([0] + [1] * (n - 1)))
        valid.append(vi.patch_index >= 0)
        counts.append(n)
        prompts.append(tokenizer.encode(s.question) + [tokenizer.sep_id])
        answer = Counter(s.answers).most_common(1)[0][0] if s.answers else ""
        answers.append(tokenizer.encode(answer) + [tokenizer.eos_id])
        ids.append(int(s.sample_id))
        lab = patch_labels(s, vi, plan, cfg)
        any_labels |= lab is not None
        labels.append(
            lab
            if lab is not None
            else torch.full((n * cfg.tokens_per_crop,), -100, dtype=torch.long)
        )
        relevance.append(relevance_labels(s.question, labels[-1][valid[-1]]))
    return Batch(
        torch.cat(pixels),
        torch.cat(positions),
        torch.cat(is_tile),
        torch.cat(valid),
        counts,
        prompts,
        answers,
        ids,
        torch.cat(labels) if any_labels else None,
        torch.cat(relevance) if any_labels else None,
    )


#: Patch class of the first code character (after none and the colour x shape classes).
GLYPH_CLASS0 = 1 + len(COLORS) * len(SHAPES)


def patch_labels(sample: Any, vi: Any, plan: Any, cfg: ReferenceConfig) -> torch.Tensor | None:
    """Per patch, the class of the shapes-vqa object or code character whose centre it holds.

    Class 0: none; ``1 + colour_index * len(SHAPES) + shape_index`` for an object;
    ``GLYPH_CLASS0 + CODE_CHARS.index(char)`` for a code character (only when the model
    has that many ``patch_classes``); ``-100`` for invalid patches. None when the sample
    has no ``objects`` or ``glyphs`` metadata (another dataset).
    """
    meta = getattr(sample, "metadata", None) or {}
    objects = [
        {**o, "cls": GLYPH_CLASS0 + CODE_CHARS.index(o["char"])}
        for o in meta.get("glyphs") or ()
        if o.get("char") in CODE_CHARS and GLYPH_CLASS0 + len(CODE_CHARS) <= cfg.patch_classes
    ]
    for o in meta.get("objects") or ():
        if o.get("color") not in COLORS or o.get("shape") not in SHAPES:
            return None
        cls = 1 + list(COLORS).index(o["color"]) * len(SHAPES) + SHAPES.index(o["shape"])
        objects.append({**o, "cls": cls})
    if not objects:
        return None
    side = cfg.patches_per_side
    pos = vi.positions  # (crops, tpc, 2) patch centres in image coordinates
    half = torch.empty_like(pos)
    half[0] = 0.5 / side  # the global crop spans the whole image
    ch, cw = plan.content_size
    half[1:, :, 0] = cfg.patch_size / (2 * ch)
    half[1:, :, 1] = cfg.patch_size / (2 * cw)
    labels = torch.zeros(pos.shape[:2], dtype=torch.long)
    for o in objects:
        centre = torch.tensor([o["cy"], o["cx"]], dtype=pos.dtype)
        inside = ((pos - centre).abs() <= half).all(-1)
        labels[inside] = o["cls"]
    if any(o["cls"] >= GLYPH_CLASS0 for o in objects):
        labels[0] = -100  # the global crop squeezes several characters into one patch
    labels = labels.reshape(-1)
    labels[vi.patch_index < 0] = -100
    return labels


def question_mentions(question: str) -> list[tuple[str | None, str]]:
    """The ``(colour or None, shape)`` objects a shapes-vqa question names, in order."""
    words = question.lower().split()
    out: list[tuple[str | None, str]] = []
    for i, w in enumerate(words):
        shape = w[:-1] if w.endswith("s") and w[:-1] in SHAPES else w
        if shape in SHAPES:
            colour = words[i - 1] if i > 0 and words[i - 1] in COLORS else None
            out.append((colour, shape))
    return out


def relevance_labels(question: str, labels: torch.Tensor) -> torch.Tensor:
    """Per valid vision token: 1/2 when it holds the first/second object ``question`` names.

    A "read the code" question names its code: every code character's token is 1.
    ``labels`` are the token's patch labels (see ``patch_labels``; -100 for unknown, which
    gives -100 here too).
    """
    colours = list(COLORS)
    out = torch.zeros_like(labels)
    out[labels < 0] = -100
    if "code" in question.lower().split():
        out[labels >= GLYPH_CLASS0] = 1
        return out
    for j, (colour, shape) in enumerate(question_mentions(question)[:2]):
        for cls in labels.unique().tolist():
            if cls <= 0 or cls >= GLYPH_CLASS0:
                continue
            c, s = colours[(cls - 1) // len(SHAPES)], SHAPES[(cls - 1) % len(SHAPES)]
            if s == shape and colour in (None, c):
                out[(labels == cls) & (out == 0)] = j + 1
    return out


_TOKENIZER: WordTokenizer | None = None


def _default_tokenizer() -> WordTokenizer:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = WordTokenizer.load()
    return _TOKENIZER
