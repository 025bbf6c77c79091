"""shapes-vqa: a procedural visual-question-answering dataset, built for knob trade-offs.

Every sample is a pure function of ``(seed, variant, index)``: any size, nothing stored,
the same bytes on every machine. An image (aspect ratio between 1:3 and 3:1) holds a
few small coloured circles, squares and triangles on a plain dark background; the
question asks for a count, a colour, an existence or a relative position. Every
question names a *shape*, and shapes are small, so telling a circle from a square
needs fine detail: a low vision-token tier blurs them and costs accuracy.

A quarter of the samples (``CODE_SHARE``) instead show a code of 1-10 digits written
in a line across a wide image, and ask ``what is the code ?``: an OCR-style question
whose answer length varies, so the decode stage has work that grows with the answer.
Its answer is scored with ANLS (``metadata["metric"] = "anls"``, which the sweep runner
uses over the dataset's ``metric``). The digits are drawn from a 3x5 pixel font
(``GLYPHS``) in ten fixed slots, left-aligned, so character ``i`` sits at the same
place in every code image.

NOTE: a code's digits are distinct and increase left to right (``0347``, never
``7430`` or ``0044``). Read left to right it is an ordinary code; the constraint lets the
0.7 M-parameter reference model answer from *which* digits it sees, in their order, as
it learns within its 30-minute CPU budget. It does not learn *where* things are in that
budget: ``reference-v1`` answered the relative-position questions at their prior (48 %),
and a first ``reference-v2`` run on unconstrained codes read none after 14 of 36 epochs.

The ``hard`` variant has smaller and more objects (its codes are drawn alike).

Other answers are single words (``yes``, ``no``, a digit, a colour). Every answer is
repeated ten times as in VQAv2 so the VQA accuracy applies unchanged.

NOTE: sizes are relative to the image (``sqrt(height * width)``), so an image's pixel
size says nothing about its difficulty; the tier decides what the model sees.

Example:
    >>> ds = ShapesVQA(100, seed=0)
    >>> s = ds[3]
    >>> s.question, s.answers[0], s.image.size
    ('how many circles are there ?', '3', (93, 134))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from knoblab.data.sample import Sample
from knoblab.errors import ConfigError
from knoblab.models.reference.vocab import (  # the reference model's vocabulary
    CODE_CHARS,
    COLORS,
    SHAPES,
)

QUESTION_TYPES: tuple[str, ...] = ("count", "color", "exist", "position")
#: Share of samples that ask to read a code (question type ``code``, scored with ANLS).
CODE_SHARE = 0.25
CODE_QUESTION = "what is the code ?"
CODE_MAX_LEN = 10  #: digits in the longest code, and the slots of a code image
#: 3x5 pixel glyphs of the code digits, rows top to bottom ("#" = ink). Hand-drawn, not a
#: font file: PIL's default font changed between Pillow releases (a bitmap font before
#: 10.1, FreeType since), and a sample must be the same bytes on every machine.
GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "##."),
    "6": ("#..", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "..#"),
}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class VariantSpec:
    """How one variant draws its images.

    Attributes:
        min_objects: fewest objects in an image.
        max_objects: most objects in an image.
        min_size: smallest object size as a fraction of ``sqrt(height * width)``.
        max_size: largest object size, same unit.
        image_scale: ``sqrt(height * width)`` of the rendered image, in pixels.
    """

    min_objects: int
    max_objects: int
    min_size: float
    max_size: float
    image_scale: int = 112


VARIANTS: dict[str, VariantSpec] = {
    "easy": VariantSpec(min_objects=2, max_objects=5, min_size=0.085, max_size=0.11),
    "hard": VariantSpec(min_objects=4, max_objects=8, min_size=0.065, max_size=0.08),
}
_VARIANT_CODE = {"easy": 1, "hard": 2}


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    fill: tuple[int, int, int],
) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.9  # same visual area as the circle, roughly
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    else:
        h = r * 1.1
        draw.polygon([(cx, cy - h), (cx + h, cy + h * 0.8), (cx - h, cy + h * 0.8)], fill=fill)


class ShapesVQA:
    """The shapes-vqa dataset; implements ``knoblab.data.VQADataset``.

    Args:
        size: number of samples (any positive integer; nothing is stored).
        seed: generation seed; a different seed is a different dataset.
        variant: ``"easy"`` or ``"hard"`` (smaller and more objects).
    """

    metric = "vqa"  # "read the code" samples carry their own: metadata["metric"] = "anls"

    def __init__(self, size: int, seed: int = 0, variant: str = "easy"):
        if not isinstance(size, int) or size < 1:
            raise ConfigError("dataset.size", size, "an integer >= 1")
        if variant not in VARIANTS:
            raise ConfigError("dataset.variant", variant, f"one of {', '.join(VARIANTS)}")
        self.size, self.seed, self.variant = size, int(seed), variant
        self.spec = VARIANTS[variant]
        self.name = "shapes-vqa" if variant == "easy" else f"shapes-vqa-{variant}"

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ShapesVQA(size={self.size}, seed={self.seed}, variant={self.variant!r})"

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self!r}")
        rng = np.random.default_rng([self.seed, _VARIANT_CODE[self.variant], index])
        extra: dict[str, Any] = {}
        if rng.random() < CODE_SHARE:
            image, glyphs, code = self._render_code(rng)
            objects: list[dict[str, Any]] = []
            qtype, question, answer = "code", CODE_QUESTION, code
            extra = {"metric": "anls", "glyphs": glyphs}
        else:
            image, objects = self._render(rng)
            qtype, question, answer = self._question(rng, objects)
        image_id = f"{self.name}-s{self.seed}-{index:08d}"
        return Sample(
            sample_id=index,
            question=question,
            answers=[answer] * 10,
            image=image,
            image_id=image_id,
            metadata={
                "question_type": qtype,
                "variant": self.variant,
                "image_size": [image.height, image.width],
                "objects": objects,
                **extra,
            },
        )

    # -- image -----------------------------------------------------------------------
    def _render(self, rng: np.random.Generator) -> tuple[Image.Image, list[dict[str, Any]]]:
        spec = self.spec
        aspect = math.exp(rng.uniform(math.log(1 / 3), math.log(3)))  # height / width
        h = max(8, round(spec.image_scale * math.sqrt(aspect)))
        w = max(8, round(spec.image_scale / math.sqrt(aspect)))
        bg = tuple(int(v) for v in rng.integers(20, 70, size=3))
        ss = 2  # draw at 2x and downsample: anti-aliased edges, like a real photo's
        canvas = Image.new("RGB", (w * ss, h * ss), bg)
        draw = ImageDraw.Draw(canvas)
        n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
        objects: list[dict[str, Any]] = []
        scale = math.sqrt(h * w)
        tries = 0
        while len(objects) < n and tries < 200:
            tries += 1
            size = rng.uniform(spec.min_size, spec.max_size) * scale
            r = size / 2
            cx = rng.uniform(r + 2, w - r - 2)
            cy = rng.uniform(r + 2, h - r - 2)
            # Keep a gap of one object between objects, so counts are well defined.
            if any(
                math.hypot(cx - o["cx"] * w, cy - o["cy"] * h) < (r + o["size"] * scale / 2) * 1.8
                for o in objects
            ):
                continue
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            color = list(COLORS)[int(rng.integers(len(COLORS)))]
            _draw_shape(draw, shape, cx * ss, cy * ss, r * ss, COLORS[color])
            objects.append(
                {
                    "shape": shape,
                    "color": color,
                    "cx": round(cx / w, 4),
                    "cy": round(cy / h, 4),
                    "size": round(size / scale, 4),
                }
            )
        image = canvas.resize((w, h), Image.Resampling.BOX)
        arr = np.asarray(image, dtype=np.int16) + rng.normal(0, 3, size=(h, w, 3)).round().astype(
            np.int16
        )
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8)), objects

    def _render_code(
        self, rng: np.random.Generator
    ) -> tuple[Image.Image, list[dict[str, Any]], str]:
        """A wide image (height / width in [1/3, 1/2]) with a code of 1-10 distinct digits
        in increasing order.

        Slot ``i`` of ten holds character ``i``: 4 font cells per slot (3 of ink, 1 of
        gap) across 92% of the width; the line sits at a random height.
        """
        n = int(rng.integers(1, CODE_MAX_LEN + 1))
        picks = sorted(int(i) for i in rng.choice(len(CODE_CHARS), size=n, replace=False))
        code = "".join(CODE_CHARS[i] for i in picks)
        aspect = math.exp(rng.uniform(math.log(1 / 3), math.log(1 / 2)))  # height / width
        h = round(self.spec.image_scale * math.sqrt(aspect))
        w = round(self.spec.image_scale / math.sqrt(aspect))
        bg = tuple(int(v) for v in rng.integers(20, 70, size=3))
        ink = COLORS[list(COLORS)[int(rng.integers(len(COLORS)))]]
        ss = 2  # drawn at 2x and downsampled, as the shapes are
        canvas = Image.new("RGB", (w * ss, h * ss), bg)
        draw = ImageDraw.Draw(canvas)
        pitch = 0.92 * w / CODE_MAX_LEN
        cell = pitch / 4
        x0 = 0.04 * w
        top = rng.uniform(0.1 * h, 0.9 * h - 5 * cell)
        glyphs = []
        for i, ch in enumerate(code):
            left = x0 + i * pitch
            for r, row in enumerate(GLYPHS[ch]):
                for c, mark in enumerate(row):
                    if mark == "#":
                        x, y = left + c * cell, top + r * cell
                        draw.rectangle(
                            [x * ss, y * ss, (x + cell) * ss - 1, (y + cell) * ss - 1], fill=ink
                        )
            glyphs.append(
                {
                    "char": ch,
                    "cx": round((left + 1.5 * cell) / w, 4),
                    "cy": round((top + 2.5 * cell) / h, 4),
                }
            )
        image = canvas.resize((w, h), Image.Resampling.BOX)
        arr = np.asarray(image, dtype=np.int16) + rng.normal(0, 3, size=(h, w, 3)).round().astype(
            np.int16
        )
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8)), glyphs, code

    # -- question --------------------------------------------------------------------
    def _question(
        self, rng: np.random.Generator, objects: list[dict[str, Any]]
    ) -> tuple[str, str, str]:
        order = list(rng.permutation(len(QUESTION_TYPES)))
        for qi in order:
            qtype = QUESTION_TYPES[qi]
            out = getattr(self, f"_q_{qtype}")(rng, objects)
            if out is not None:
                return (qtype, *out)
        raise AssertionError("the count question always applies")  # pragma: no cover

    @staticmethod
    def _q_count(rng: np.random.Generator, objects: list[dict[str, Any]]) -> tuple[str, str]:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        n = sum(o["shape"] == shape for o in objects)
        return f"how many {shape}s are there ?", str(n)

    @staticmethod
    def _q_color(rng: np.random.Generator, objects: list[dict[str, Any]]) -> tuple[str, str] | None:
        unique = [s for s in SHAPES if sum(o["shape"] == s for o in objects) == 1]
        if not unique:
            return None
        shape = unique[int(rng.integers(len(unique)))]
        obj = next(o for o in objects if o["shape"] == shape)
        return f"what color is the {shape} ?", obj["color"]

    @staticmethod
    def _q_exist(rng: np.random.Generator, objects: list[dict[str, Any]]) -> tuple[str, str] | None:
        present = {(o["color"], o["shape"]) for o in objects}
        if rng.random() < 0.5:
            color, shape = sorted(present)[int(rng.integers(len(present)))]
            answer = "yes"
        else:
            # A hard "no": same colour as a present object, or same shape; never random noise.
            absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
            near = [(c, s) for c, s in absent if any(c == pc or s == ps for pc, ps in present)]
            pool = near or absent
            color, shape = pool[int(rng.integers(len(pool)))]
            answer = "no"
        return f"is there a {color} {shape} ?", answer

    @staticmethod
    def _q_position(
        rng: np.random.Generator, objects: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        key = [(o["color"], o["shape"]) for o in objects]
        unique = [o for o, k in zip(objects, key, strict=True) if key.count(k) == 1]
        pairs = [(a, b) for a in unique for b in unique if a is not b]
        if not pairs:
            return None
        a, b = pairs[int(rng.integers(len(pairs)))]
        dx, dy = a["cx"] - b["cx"], a["cy"] - b["cy"]
        axis_rel = ("left of", "right of") if abs(dx) >= abs(dy) else ("above", "below")
        truth = axis_rel[0] if (dx < 0 if abs(dx) >= abs(dy) else dy < 0) else axis_rel[1]
        ask = axis_rel[int(rng.integers(2))]
        answer = "yes" if ask == truth else "no"
        return f"is the {a['color']} {a['shape']} {ask} the {b['color']} {b['shape']} ?", answer


def build(cfg: Mapping[str, Any]) -> ShapesVQA:
    """``ShapesVQA`` from a ``dataset`` config section (keys: name, size, seed, variant, format)."""
    allowed = {"name", "size", "seed", "variant", "format"}
    for k in cfg:
        if k not in allowed:
            from knoblab.errors import UnknownKeyError

            raise UnknownKeyError(f"dataset.{k}", cfg[k], allowed)
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError("dataset.seed", seed, "an integer")
    return ShapesVQA(cfg.get("size", 1000), seed=seed, variant=cfg.get("variant", "easy"))
