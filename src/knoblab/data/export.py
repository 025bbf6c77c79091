"""Export any dataset as a JSONL manifest plus image files, so a user can look at it.

Layout (documented in ``docs/formats.md``, section "JSONL manifest"; read back with
``dataset=jsonl dataset.path=<out_dir>/manifest.jsonl``)::

    out_dir/
      manifest.jsonl          one JSON object per line
      images/<image_id>.png   one file per distinct image

Each line: ``{"sample_id": int, "image": "images/<image_id>.png", "image_id": str,
"question": str, "answers": [str, ...], "metadata": {...}}``; ``image`` is relative to
the manifest's folder.

NOTE: the manifest is written through ``knoblab.atomic.atomic_write`` (a temporary
file renamed at the end), so an interrupted export never leaves a truncated manifest
(the images written so far stay); a full disk is one line naming the file.
An existing manifest is never overwritten unless ``overwrite=True``. Samples sharing
an ``image_id`` (several questions about one image) share one image file.

Example:
    >>> from knoblab.data.shapes import ShapesVQA
    >>> export_dataset(ShapesVQA(1000, variant="hard"), "exports/hard", num_samples=50)
    PosixPath('exports/hard/manifest.jsonl')
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from knoblab.atomic import atomic_write, ensure_dir
from knoblab.config import check_int
from knoblab.data.sample import VQADataset
from knoblab.errors import ConfigError, DataError
from knoblab.records.io import json_default

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_image_name(image_id: str, sample_id: int) -> str:
    """A file-name-safe stem for ``image_id`` (the sample id when there is none)."""
    stem = _UNSAFE.sub("_", str(image_id)).strip("._") or f"sample-{sample_id}"
    return stem[:200]


def _save_image(image: Any, path: Path, where: str) -> None:
    try:
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as f:
                f.load()
                img = f
                img.convert("RGB" if img.mode not in ("RGB", "RGBA", "L") else img.mode).save(
                    path, format="PNG"
                )
            return
        if not isinstance(image, Image.Image):
            raise DataError(
                f"image of type {type(image).__name__} in {where}: allowed is a PIL image or a path"
            )
        image.save(path, format="PNG")
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"disk full writing {path}; finished results are kept") from None
        raise DataError(f"image in {where} cannot be exported: {exc}") from None


def export_dataset(
    dataset: VQADataset,
    out_dir: str | os.PathLike[str],
    *,
    num_samples: int | None = None,
    indices: Iterable[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write samples of ``dataset`` to ``out_dir``; returns the manifest's path.

    Args:
        dataset: any ``VQADataset``.
        out_dir: the folder to write (created).
        num_samples: how many samples (the first of ``indices``); None: all of them.
        indices: dataset indices to export, in order (default ``0..len-1``).
        overwrite: replace an existing manifest.
        progress: show a rich progress bar.
    """
    out = Path(out_dir)
    manifest = out / "manifest.jsonl"
    if manifest.exists() and not overwrite:
        raise ConfigError(
            "out_dir", str(out), "a folder without manifest.jsonl (or overwrite=true)"
        )
    check_int("num_samples", num_samples, 1, allow_none=True, none_means="all")
    order: Iterable[int] = range(len(dataset)) if indices is None else indices
    total = len(dataset) if indices is None else None
    if num_samples is not None:
        total = num_samples if total is None else min(total, num_samples)
    ensure_dir(out / "images", "out_dir")
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        from rich.progress import Progress

        written: set[str] = set()
        with (
            open(tmp, "w", encoding="utf-8") as fh,
            Progress(disable=not progress, transient=True) as bar,
        ):
            task = bar.add_task(f"export {getattr(dataset, 'name', 'dataset')}", total=total)
            for index in order:
                if num_samples is not None and count >= num_samples:
                    break
                s = dataset[int(index)]
                stem = safe_image_name(s.image_id, s.sample_id)
                rel = f"images/{stem}.png"
                if stem not in written:
                    where = f"sample {s.sample_id} (image_id={s.image_id!r})"
                    _save_image(s.image, out / rel, where)
                    written.add(stem)
                record = {
                    "sample_id": int(s.sample_id),
                    "image": rel,
                    "image_id": str(s.image_id or stem),
                    "question": s.question,
                    "answers": list(s.answers),
                    "metadata": s.metadata,
                }
                fh.write(json.dumps(record, default=json_default, ensure_ascii=False) + "\n")
                count += 1
                bar.advance(task)

    return atomic_write(manifest, write)
