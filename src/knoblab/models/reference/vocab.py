"""The reference model's visual vocabulary: the colours, shapes and code characters it sees.

The reference VLM is trained on shapes-vqa; its auxiliary patch classes are
``1 + colour_index * len(SHAPES) + shape_index`` for shapes, then
``1 + len(COLORS) * len(SHAPES) + CODE_CHARS.index(char)`` for the characters of a
rendered code (the "read the code" questions). The vocabulary lives here, below both
the model and the dataset, so that the model never imports a dataset
(``knoblab.data.shapes`` draws with these same names and RGB values).
"""

from __future__ import annotations

__all__ = ["CODE_CHARS", "COLORS", "SHAPES"]

#: Colour name -> RGB, in class order.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
}
#: Shape names, in class order.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
#: Characters of the codes shapes-vqa renders (tokens ``0``..``9`` and ``##0``..``##9``).
CODE_CHARS: str = "0123456789"
