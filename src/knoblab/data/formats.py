"""Datasets on disk: JSONL manifest, COCO-VQA / VQAv2, Hugging Face ``datasets``, OmniDocBench.

Each ``build_*(cfg)`` takes the ``dataset`` config section (``conf/dataset/<format>.yaml``)
and returns a :class:`RecordDataset` (a ``knoblab.data.VQADataset``). The layouts, with a
minimal example each, are in ``docs/formats.md``.

Bad input does not stop a load: a malformed record or a record whose image file is
missing is reported (``logging``, one line with its file and line, or record index for
JSON arrays), counted in ``dataset.skipped``, and skipped; one summary warning names
the count. A dataset left with no sample at all is a ``DataError``.

NOTE: images are kept as paths and opened by the adapter at measurement time, so a
file that exists but is corrupt fails only its own sample (``DataError`` there).

Safety (every format): an image path that leaves the dataset folder (``../``, an
absolute path, a symlink pointing out) is refused and reported like a malformed record
unless ``dataset.allow_outside_paths=true``. An image of more than
``dataset.max_image_pixels`` pixels (default 64 MP; ``null``: no knoblab limit) fails
its own sample with one line naming its size, checked from the file header before
anything is decoded; Pillow's own decompression-bomb warning is not the guard.

Encodings: a JSONL manifest is read as UTF-8 line by line; a line with bytes that are
not UTF-8 is reported with its ``file:line`` and skipped. A manifest starting with a
UTF-16 (or UTF-8) byte-order mark is decoded as such; a UTF-16 file without one is
one ``DataError`` line saying to save it as UTF-8.

Example:
    >>> from knoblab.data.export import export_dataset
    >>> from knoblab.data.shapes import ShapesVQA
    >>> manifest = export_dataset(ShapesVQA(20), "export/shapes-vqa", num_samples=20)
    >>> ds = build_jsonl({"path": str(manifest)})
    >>> ds.name, ds.metric, len(ds)
    ('shapes-vqa', 'vqa', 20)
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knoblab.config import check_int, to_dataclass
from knoblab.data.sample import Sample
from knoblab.data.scoring import resolve_metric
from knoblab.errors import ConfigError, DataError, Skipped

log = logging.getLogger(__name__)

__all__ = [
    "RecordDataset",
    "build_coco_vqa",
    "build_hf_disk",
    "hf_records",
    "build_jsonl",
    "build_omnidocbench",
]


class RecordDataset:
    """Samples loaded from files; implements ``knoblab.data.VQADataset``.

    Args:
        name: task name used in record file names.
        metric: a name in ``knoblab.data.scoring.METRICS`` (``vqa``, ``anls``, ...); an
            alias (``edit_distance``) is stored under its canonical name.
        items: one entry per sample; a ``Sample`` or anything ``make`` turns into one.
        make: builds the ``Sample`` for ``items[i]`` on access (lazy formats).
        skipped: the records left out, for the summary.
        max_image_pixels: an image file larger than this fails its sample on access.
    """

    def __init__(
        self,
        name: str,
        metric: str,
        items: Sequence[Any],
        make: Callable[[int, Any], Sample] | None = None,
        skipped: Sequence[Skipped] = (),
        max_image_pixels: int | None = None,
    ):
        self.name, self.metric = name, resolve_metric(metric, "dataset.metric")
        self._items, self._make = items, make
        self.skipped = list(skipped)
        self._pixels = _PixelCap(max_image_pixels)
        if self.skipped:
            warnings.warn(
                f"dataset {name!r}: skipped {len(self.skipped)} malformed record(s) or missing image(s) "
                f"(first: {self.skipped[0]}); {len(items)} loaded",
                stacklevel=3,
            )
        if len(items) == 0:
            raise DataError(f"dataset {name!r} has no usable sample ({len(self.skipped)} skipped)")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:
        item = self._items[index]
        sample = self._make(int(index), item) if self._make is not None else item
        self._pixels.check(sample)
        return sample

    def __repr__(self) -> str:
        return f"RecordDataset(name={self.name!r}, metric={self.metric!r}, len={len(self)})"


class _Report:
    """Collects skipped records, logging each with its location."""

    def __init__(self) -> None:
        self.items: list[Skipped] = []

    def skip(self, where: str, reason: str) -> None:
        s = Skipped(where, reason)
        log.warning("skipped %s", s)
        self.items.append(s)


#: The default of ``dataset.max_image_pixels``: 64 megapixels (8000 x 8000).
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


class SampleDataError(DataError):
    """A sample that cannot be loaded; ``sample_id`` is its real id (the runner records it)."""

    def __init__(self, message: str, sample_id: Any):
        super().__init__(message)
        self.sample_id = sample_id


def _check_max_pixels(value: int | None) -> None:
    check_int("dataset.max_image_pixels", value, 1, allow_none=True, none_means="no limit")


def _too_large(size: tuple[int, int], cap: int) -> str:
    w, h = size
    return (
        f"image is {w}x{h} = {w * h / 1e6:.1f} MP, over dataset.max_image_pixels={cap} "
        f"({cap / 1e6:g} MP); raise the limit to measure it"
    )


def _header_size(image: Any) -> tuple[int, int] | str | None:
    """(width, height) from the image header (no pixel decoding), an error text, or None."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(image) as im:
                return im.size
    except Image.DecompressionBombError as exc:
        return f"image is over Pillow's decompression-bomb limit ({exc})"
    except (OSError, ValueError, SyntaxError):
        return None  # unreadable: the adapter reports it when it opens the image


class _PixelCap:
    """Fails a sample whose image file has more pixels than the cap (header read, cached)."""

    def __init__(self, cap: int | None):
        _check_max_pixels(cap)
        self.cap = cap
        self._sizes: dict[str, tuple[int, int] | str | None] = {}

    def check(self, sample: Sample) -> None:
        if self.cap is None or not isinstance(sample.image, (str, os.PathLike)):
            return
        key = os.fspath(sample.image)
        if key not in self._sizes:
            self._sizes[key] = _header_size(key)
        size = self._sizes[key]
        if size is None:
            return
        if isinstance(size, str) or size[0] * size[1] > self.cap:
            why = size if isinstance(size, str) else _too_large(size, self.cap)
            raise SampleDataError(
                f"sample {sample.sample_id}: {key}: {why}", getattr(sample, "sample_id", None)
            )


def _answers(value: Any) -> list[str]:
    """Answers as a list of strings: a string, a list of strings, or VQA ``{"answer": ...}`` dicts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        out = [v["answer"] if isinstance(v, Mapping) else v for v in value]
        if all(isinstance(v, str) for v in out):
            return list(out)
    raise ValueError(f"answers must be a string or a list of strings, got {value!r}")


class _ImageCheck:
    """Why an image path cannot be used, or None; cached (VQAv2: ~5 questions per image).

    A path is refused when it leaves ``root`` (``../``, absolute, a symlink pointing out)
    unless ``allow_outside``, and, with ``enabled``, when the file does not exist.
    """

    def __init__(self, enabled: bool, root: Path | None = None, allow_outside: bool = True):
        self.enabled, self.allow_outside = enabled, allow_outside
        self.root = root
        self._real_root = os.path.realpath(root) if root is not None else ""
        self._seen: dict[Path, str | None] = {}

    def problem(self, path: Path, shown: str) -> str | None:
        if path not in self._seen:
            self._seen[path] = self._problem(path, shown)
        return self._seen[path]

    def _problem(self, path: Path, shown: str) -> str | None:
        if not self.allow_outside and self.root is not None:
            real = os.path.realpath(path)
            if os.path.commonpath([real, self._real_root]) != self._real_root:
                return (
                    f"image {shown!r} leaves the dataset folder {self.root} (resolves to "
                    f"{real}); set dataset.allow_outside_paths=true to allow it"
                )
        if self.enabled and not path.is_file():
            return f"image {shown!r} not found under {self.root}"
        return None

    def __call__(self, path: Path) -> bool:
        return self.problem(path, str(path)) is None


def _existing(path: str, key: str, what: str = "file") -> Path:
    p = Path(path).expanduser()
    ok = p.is_file() if what == "file" else p.is_dir() if what == "dir" else p.exists()
    if not path or not ok:
        raise ConfigError(key, path, f"an existing {what}")
    return p


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _manifest_lines(path: Path, report: _Report) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; a line that is not UTF-8 is reported and skipped.

    NOTE: a UTF-16 file with a byte-order mark is decoded whole (such files are small
    enough: UTF-16 manifests come from Windows editors); without a BOM it is refused with
    one line, since decoding it as UTF-8 would report every line as invalid JSON.
    """
    with path.open("rb") as f:
        head = f.read(4096)
        if head.startswith(_UTF16_BOMS):
            f.seek(0)
            try:
                text = f.read().decode("utf-16")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}: UTF-16 byte-order mark but invalid UTF-16 at byte {exc.start}: "
                    "save the manifest as UTF-8"
                ) from None
            yield from enumerate(text.split("\n"), start=1)
            return
        if b"\x00" in head:
            raise DataError(
                f"{path}: not UTF-8 (NUL bytes: UTF-16 without a byte-order mark?): "
                "save the manifest as UTF-8"
            )
        f.seek(3 if head.startswith(b"\xef\xbb\xbf") else 0)
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.skip(
                    f"{path}:{lineno}",
                    f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                )


def _read_jsonl(path: Path, report: _Report) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each parseable line; bad JSON or bytes are reported and skipped."""
    rows = []
    for lineno, line in _manifest_lines(path, report):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            report.skip(f"{path}:{lineno}", f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            report.skip(f"{path}:{lineno}", "not a JSON object")
            continue
        rows.append((lineno, obj))
    return rows


# --------------------------------------------------------------------------- JSONL
@dataclass
class JsonlConfig:
    """``dataset`` keys of the JSONL manifest format."""

    format: str = "jsonl"
    path: str = ""  # the manifest; each line's "image" is relative to its folder
    name: str = ""  # task name; default: the manifest folder's name
    metric: str = "vqa"  # a name in knoblab.data.scoring.METRICS
    check_images: bool = True  # skip records whose image file does not exist
    allow_outside_paths: bool = False  # true: measure images outside the dataset folder
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS  # larger images fail their sample


def build_jsonl(cfg: Mapping[str, Any]) -> RecordDataset:
    """The JSONL manifest written by ``knoblab export-data`` (one JSON object per line).

    Fields: ``sample_id`` (int, default the line's index), ``image`` (path relative to the
    manifest), ``image_id``, ``question``, ``answers`` (list of strings), ``metadata``.
    """
    c = to_dataclass(cfg, JsonlConfig, "dataset")
    manifest = _existing(c.path, "dataset.path")
    _check_max_pixels(c.max_image_pixels)
    root, report = manifest.parent, _Report()
    exists = _ImageCheck(c.check_images, root, c.allow_outside_paths)
    samples: list[Sample] = []
    first_line: dict[int, int] = {}  # sample_id -> its line: ids must be unique
    for lineno, obj in _read_jsonl(manifest, report):
        where = f"{manifest}:{lineno}"
        try:
            question, image = obj["question"], obj["image"]
            if not isinstance(question, str) or not isinstance(image, str):
                raise ValueError("question and image must be strings")
            answers = _answers(obj.get("answers", []))
            metadata = obj.get("metadata", {})
            if not isinstance(metadata, dict):
                raise ValueError("metadata must be an object")
            sample_id = int(obj.get("sample_id", len(samples)))
        except KeyError as exc:
            report.skip(where, f"missing field {exc.args[0]!r}")
            continue
        except (ValueError, TypeError) as exc:
            report.skip(where, str(exc))
            continue
        if sample_id in first_line:
            report.skip(
                where, f"duplicate sample_id {sample_id} (first on line {first_line[sample_id]})"
            )
            continue
        path = root / image
        problem = exists.problem(path, image)
        if problem:
            report.skip(where, problem)
            continue
        first_line[sample_id] = lineno
        samples.append(
            Sample(
                sample_id=sample_id,
                question=question,
                answers=answers,
                image=path,
                image_id=str(obj.get("image_id", Path(image).stem)),
                metadata=metadata,
            )
        )
    return RecordDataset(
        c.name or manifest.parent.name,
        c.metric,
        samples,
        skipped=report.items,
        max_image_pixels=c.max_image_pixels,
    )


# ------------------------------------------------------------------------ COCO-VQA
@dataclass
class CocoVqaConfig:
    """``dataset`` keys of the COCO-VQA / VQAv2 format."""

    format: str = "coco_vqa"
    questions: str = ""  # v2_OpenEnded_mscoco_val2014_questions.json
    annotations: str = ""  # v2_mscoco_val2014_annotations.json; empty: no answers (test split)
    images: str = ""  # the folder of COCO images
    # image file name; {data_subtype} comes from the questions file (e.g. val2014)
    image_pattern: str = "COCO_{data_subtype}_{image_id:012d}.jpg"
    name: str = ""  # task name; default coco-<data_subtype>-vqa
    metric: str = "vqa"
    check_images: bool = True
    allow_outside_paths: bool = False  # true: measure images outside the dataset folder
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS  # larger images fail their sample


def _load_json(path: Path) -> Any:
    """A whole JSON file (UTF-8, or UTF-16/32 with a BOM); one ``DataError`` line otherwise."""
    raw = path.read_bytes()
    try:
        return json.loads(raw)  # detects UTF-8/16/32 (RFC 8259 section 8.1)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
            "save the file as UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def _json_records(path: Path, key: str) -> tuple[dict[str, Any], list[Any]]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataError(f"{path}: expected an object with a {key!r} list (the VQAv2 layout)")
    return data, data[key]


def build_coco_vqa(cfg: Mapping[str, Any]) -> RecordDataset:
    """VQAv2 / COCO-VQA: questions JSON + annotations JSON + image folder; metric ``vqa``.

    NOTE: JSON arrays have no useful line numbers; skipped records are located as
    ``file[questions #i]`` (the record's index in the file's array).
    """
    c = to_dataclass(cfg, CocoVqaConfig, "dataset")
    qpath = _existing(c.questions, "dataset.questions")
    images = _existing(c.images, "dataset.images", "dir")
    qdata, questions = _json_records(qpath, "questions")
    subtype = str(qdata.get("data_subtype", ""))
    _check_max_pixels(c.max_image_pixels)
    report, exists = _Report(), _ImageCheck(c.check_images, images, c.allow_outside_paths)
    answers_by_qid: dict[Any, tuple[list[str], dict[str, Any]]] = {}
    if c.annotations:
        apath = _existing(c.annotations, "dataset.annotations")
        for i, ann in enumerate(_json_records(apath, "annotations")[1]):
            try:
                extra = {
                    k: ann[k]
                    for k in ("question_type", "answer_type", "multiple_choice_answer")
                    if k in ann
                }
                answers_by_qid[ann["question_id"]] = (_answers(ann["answers"]), extra)
            except (KeyError, TypeError, ValueError) as exc:
                report.skip(f"{apath}[annotations #{i}]", f"malformed annotation ({exc!r})")
    samples: list[Sample] = []
    for i, q in enumerate(questions):
        where = f"{qpath}[questions #{i}]"
        try:
            qid, image_id, question = q["question_id"], int(q["image_id"]), q["question"]
            if not isinstance(question, str):
                raise ValueError("question must be a string")
        except (KeyError, TypeError, ValueError) as exc:
            report.skip(where, f"malformed question ({exc!r})")
            continue
        if c.annotations and qid not in answers_by_qid:
            report.skip(where, f"question_id {qid} has no annotation")
            continue
        answers, extra = answers_by_qid.get(qid, ([], {}))
        try:
            fname = c.image_pattern.format(data_subtype=subtype, image_id=image_id)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                "dataset.image_pattern",
                c.image_pattern,
                "a format string with {image_id} and {data_subtype}",
            ) from exc
        path = images / fname
        problem = exists.problem(path, fname)
        if problem:
            report.skip(where, problem)
            continue
        samples.append(
            Sample(
                sample_id=int(qid),
                question=question,
                answers=answers,
                image=path,
                image_id=str(image_id),
                metadata={"question_id": qid, **extra},
            )
        )
    name = c.name or f"coco-{subtype or 'vqa'}-vqa".replace("-vqa-vqa", "-vqa")
    return RecordDataset(
        name, c.metric, samples, skipped=report.items, max_image_pixels=c.max_image_pixels
    )


# ------------------------------------------------------------------ HF on disk
@dataclass
class HfDiskConfig:
    """``dataset`` keys of Hugging Face ``datasets`` saved to disk or Parquet files."""

    format: str = "hf_disk"
    path: str = ""  # a save_to_disk folder, a .parquet file, or a folder of .parquet files
    split: str = (
        ""  # for a DatasetDict: which split (default: the only one, or "validation"/"test")
    )
    name: str = ""  # task name; default the folder / file name
    metric: str = "vqa"
    # knoblab field -> column name; sample_id/image_id empty: the row index / "" (none)
    columns: dict[str, str] = field(
        default_factory=lambda: {
            "question": "question",
            "answers": "answers",
            "image": "image",
            "image_id": "image_id",
            "sample_id": "",
        }
    )
    allow_outside_paths: bool = False  # true: measure images outside the dataset folder
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS  # larger images fail their sample


def _load_hf(c: HfDiskConfig) -> tuple[Any, Path]:
    import datasets

    path = Path(c.path).expanduser()
    if not c.path or not path.exists():
        raise ConfigError("dataset.path", c.path, "a save_to_disk folder or Parquet file(s)")
    parquet = [path] if path.suffix == ".parquet" else sorted(path.glob("*.parquet"))
    if (
        parquet
        and not (path / "dataset_info.json").exists()
        and not (path / "dataset_dict.json").exists()
    ):
        ds = datasets.Dataset.from_parquet([str(p) for p in parquet])
        return ds, path
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(
            "dataset.path", c.path, f"a save_to_disk folder or Parquet file(s) ({exc})"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        split = c.split or (
            splits[0]
            if len(splits) == 1
            else next((s for s in ("validation", "test") if s in ds), "")
        )
        if split not in ds:
            raise ConfigError("dataset.split", c.split, f"one of {', '.join(splits)}")
        ds = ds[split]
    return ds, path


def _columns(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with a partial ``columns`` mapping completed by the defaults."""
    data = dict(cfg)
    if "columns" in data:  # a partial mapping keeps the defaults of the other fields
        data["columns"] = {**HfDiskConfig().columns, **dict(data["columns"])}
    return data


def build_hf_disk(cfg: Mapping[str, Any]) -> RecordDataset:
    """Hugging Face ``datasets`` from ``save_to_disk`` or Parquet; columns mapped by ``columns``.

    The image column may hold ``datasets.Image`` values (decoded lazily), or path strings
    (relative to the dataset folder). Text columns are checked for every row at load;
    images are decoded only when a sample is read.
    """
    c = to_dataclass(_columns(cfg), HfDiskConfig, "dataset")
    ds, path = _load_hf(c)
    name = c.name or (path.stem if path.is_file() else path.name)
    root = path if path.is_dir() else path.parent
    return hf_records(
        ds,
        c.columns,
        str(path),
        root,
        name,
        c.metric,
        allow_outside_paths=c.allow_outside_paths,
        max_image_pixels=c.max_image_pixels,
    )


def hf_records(
    ds: Any,
    columns: Mapping[str, str],
    label: str,
    root: Path,
    name: str,
    metric: str,
    *,
    allow_outside_paths: bool = False,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> RecordDataset:
    """A ``datasets.Dataset`` as knoblab samples, through the ``columns`` mapping.

    ``label`` names the source in skip reports; relative image paths are read under ``root``
    and refused when they leave it unless ``allow_outside_paths``; images over
    ``max_image_pixels`` fail their sample.
    """
    unknown = set(columns) - set(HfDiskConfig().columns)
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(
            f"dataset.columns.{bad}", columns[bad], f"one of {', '.join(HfDiskConfig().columns)}"
        )
    cols = {k: v for k, v in columns.items() if v}
    for key in ("question", "image"):
        if key not in cols or cols[key] not in ds.column_names:
            raise ConfigError(
                f"dataset.columns.{key}",
                cols.get(key, ""),
                f"a column of {', '.join(ds.column_names)}",
            )
    text_cols = [v for k, v in cols.items() if k != "image" and v in ds.column_names]
    table = ds.select_columns(text_cols).to_dict() if text_cols else {}
    images_null = ds.data.column(cols["image"]).is_null().to_pylist()  # arrow: no image decoding
    _check_max_pixels(max_image_pixels)
    report, rows, first_row = _Report(), [], {}
    for i in range(len(ds)):
        where = f"{label}[row {i}]"
        try:
            question = table[cols["question"]][i]
            if not isinstance(question, str):
                raise ValueError(f"question {question!r} is not a string")
            answers = _answers(table[cols["answers"]][i]) if cols.get("answers") in table else []
            sample_id = int(table[cols["sample_id"]][i]) if cols.get("sample_id") in table else i
            image_id = str(table[cols["image_id"]][i]) if cols.get("image_id") in table else ""
        except (ValueError, TypeError) as exc:
            report.skip(where, str(exc))
            continue
        if images_null[i]:
            report.skip(where, f"no image in column {cols['image']!r}")
            continue
        if sample_id in first_row:
            report.skip(
                where, f"duplicate sample_id {sample_id} (first in row {first_row[sample_id]})"
            )
            continue
        first_row[sample_id] = i
        rows.append((i, sample_id, question, answers, image_id))

    image_of = _HfImages(ds, cols["image"], label, root, allow_outside_paths, max_image_pixels)

    def make(_index: int, row: tuple[int, int, str, list[str], str]) -> Sample:
        i, sample_id, question, answers, image_id = row
        return Sample(
            sample_id=sample_id,
            question=question,
            answers=answers,
            image=image_of(i, sample_id),
            image_id=image_id,
        )

    return RecordDataset(
        name, metric, rows, make=make, skipped=report.items, max_image_pixels=max_image_pixels
    )


class _HfImages:
    """Row ``i``'s image of a ``datasets`` table: a checked path, or a PIL image (capped).

    The image column is read undecoded (``datasets.Image(decode=False)``) so that the
    pixel cap is checked from the header before decoding, and so that a row whose bytes
    do not decode fails as that row (``SampleDataError`` naming file, row and sample_id)
    instead of as a dataset index.
    """

    def __init__(
        self,
        ds: Any,
        column: str,
        label: str,
        root: Path,
        allow_outside_paths: bool,
        max_image_pixels: int | None,
    ):
        import datasets

        if isinstance(ds.features.get(column), datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
        self.ds, self.column, self.path, self.cap = ds, column, label, max_image_pixels
        self.paths = _ImageCheck(False, root, allow_outside_paths)

    def __call__(self, i: int, sample_id: int) -> Any:
        where = f"{self.path}[row {i}] (sample_id {sample_id})"
        raw = self.ds[i][self.column]
        if isinstance(raw, Mapping) and raw.get("path") and not raw.get("bytes"):
            raw = str(raw["path"])
        if isinstance(raw, str):
            problem = self.paths.problem(self.paths.root / raw, raw)  # type: ignore[operator]
            if problem:
                raise SampleDataError(f"{where}: {problem}", sample_id)
            return self.paths.root / raw  # type: ignore[operator]
        if isinstance(raw, Mapping) and raw.get("bytes"):
            return self._decode(bytes(raw["bytes"]), where, sample_id)
        if hasattr(raw, "size") and hasattr(raw, "convert"):  # already a PIL image
            return raw
        raise SampleDataError(
            f"{where}: image of type {type(raw).__name__}: allowed is image bytes or a path",
            sample_id,
        )

    def _decode(self, data: bytes, where: str, sample_id: int) -> Any:
        from PIL import Image

        size = _header_size(io.BytesIO(data))
        if isinstance(size, str) or (size and self.cap and size[0] * size[1] > self.cap):
            why = size if isinstance(size, str) else _too_large(size, self.cap or 0)
            raise SampleDataError(f"{where}: {why}", sample_id)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                img.load()
            return img
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise SampleDataError(f"{where}: image cannot be decoded ({exc})", sample_id) from None


# ----------------------------------------------------------------- OmniDocBench
@dataclass
class OmniDocBenchConfig:
    """``dataset`` keys of OmniDocBench-style page OCR."""

    format: str = "omnidocbench"
    annotations: str = ""  # OmniDocBench.json, or a JSONL of {"image", "text"} pages
    images: str = ""  # the page-image folder; default: the annotation file's folder
    question: str = "Read all the text in the image."  # the question asked for every page
    name: str = "omnidocbench"
    metric: str = "edit_similarity"  # 1 - OmniDocBench's normalised edit distance
    # layout categories left out of the ground truth (OmniDocBench's non-text regions)
    ignore_categories: list[str] = field(
        default_factory=lambda: [
            "abandon",
            "figure",
            "table",
            "equation_isolated",
            "header",
            "footer",
        ]
    )
    check_images: bool = True
    allow_outside_paths: bool = False  # true: measure images outside the dataset folder
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS  # larger images fail their sample


def _page_text(page: Mapping[str, Any], ignore: set[str]) -> str:
    """Ground-truth text of one OmniDocBench page: text regions in reading order."""
    dets = [
        d for d in page["layout_dets"] if d.get("category_type") not in ignore and d.get("text")
    ]
    dets.sort(key=lambda d: (d.get("order") is None, d.get("order") or 0))
    return "\n".join(str(d["text"]) for d in dets)


def build_omnidocbench(cfg: Mapping[str, Any]) -> RecordDataset:
    """Page images with ground-truth text; metric ``edit_similarity``.

    ``annotations`` is either OmniDocBench's JSON (a list of pages with
    ``page_info.image_path`` and ``layout_dets`` holding ``text``, ``category_type`` and
    reading ``order``) or a JSONL with one ``{"image": ..., "text": ...}`` page per line.
    """
    c = to_dataclass(cfg, OmniDocBenchConfig, "dataset")
    ann = _existing(c.annotations, "dataset.annotations")
    images = _existing(c.images, "dataset.images", "dir") if c.images else ann.parent
    _check_max_pixels(c.max_image_pixels)
    report, ignore = _Report(), set(c.ignore_categories)
    exists = _ImageCheck(c.check_images, images, c.allow_outside_paths)
    pages: list[tuple[str, str, str, dict[str, Any]]] = []  # where, image, text, metadata
    if ann.suffix == ".jsonl":
        for lineno, obj in _read_jsonl(ann, report):
            where = f"{ann}:{lineno}"
            image, text = obj.get("image"), obj.get("text")
            if not isinstance(image, str) or not isinstance(text, str):
                report.skip(where, "needs string fields 'image' and 'text'")
                continue
            pages.append((where, image, text, dict(obj.get("metadata", {}))))
    else:
        data = _load_json(ann)
        if not isinstance(data, list):
            raise DataError(f"{ann}: expected a list of pages (the OmniDocBench layout)")
        for i, page in enumerate(data):
            where = f"{ann}[page #{i}]"
            try:
                info = page["page_info"]
                image = info["image_path"]
                text = _page_text(page, ignore)
            except (KeyError, TypeError, AttributeError) as exc:
                report.skip(where, f"malformed page ({exc!r})")
                continue
            pages.append((where, image, text, dict(info.get("page_attribute", {}))))
    samples: list[Sample] = []
    for where, image, text, metadata in pages:
        path = images / image
        problem = exists.problem(path, image)
        if problem:
            report.skip(where, problem)
            continue
        samples.append(
            Sample(
                sample_id=len(samples),
                question=c.question,
                answers=[text],
                image=path,
                image_id=Path(image).stem,
                metadata=metadata,
            )
        )
    return RecordDataset(
        c.name, c.metric, samples, skipped=report.items, max_image_pixels=c.max_image_pixels
    )
