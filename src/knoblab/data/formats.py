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

Example:
    >>> ds = build_jsonl({"path": "export/shapes-vqa/manifest.jsonl"})
    >>> ds.name, ds.metric, len(ds), ds[0].question
    ('shapes-vqa', 'vqa', 200, 'What color is the circle?')
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knoblab.config import to_dataclass
from knoblab.data.sample import Sample
from knoblab.data.scoring import METRICS
from knoblab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "RecordDataset",
    "build_coco_vqa",
    "build_hf_disk",
    "hf_records",
    "build_jsonl",
    "build_omnidocbench",
]


@dataclass
class Skipped:
    """One record left out: where it is (``file:line``) and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class RecordDataset:
    """Samples loaded from files; implements ``knoblab.data.VQADataset``.

    Args:
        name: task name used in record file names.
        metric: ``vqa``, ``exact_match`` or ``edit_distance``.
        items: one entry per sample; a ``Sample`` or anything ``make`` turns into one.
        make: builds the ``Sample`` for ``items[i]`` on access (lazy formats).
        skipped: the records left out, for the summary.
    """

    def __init__(
        self,
        name: str,
        metric: str,
        items: Sequence[Any],
        make: Callable[[int, Any], Sample] | None = None,
        skipped: Sequence[Skipped] = (),
    ):
        if metric not in METRICS:
            raise ConfigError("dataset.metric", metric, f"one of {', '.join(METRICS)}")
        self.name, self.metric = name, metric
        self._items, self._make = items, make
        self.skipped = list(skipped)
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
        return self._make(int(index), item) if self._make is not None else item

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
    """``is_file`` with a cache: many questions share one image (VQAv2: ~5 per image)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._seen: dict[Path, bool] = {}

    def __call__(self, path: Path) -> bool:
        if not self.enabled:
            return True
        if path not in self._seen:
            self._seen[path] = path.is_file()
        return self._seen[path]


def _existing(path: str, key: str, what: str = "file") -> Path:
    p = Path(path).expanduser()
    ok = p.is_file() if what == "file" else p.is_dir() if what == "dir" else p.exists()
    if not path or not ok:
        raise ConfigError(key, path, f"an existing {what}")
    return p


def _read_jsonl(path: Path, report: _Report) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each parseable line; bad JSON is reported and skipped."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
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
    metric: str = "vqa"  # vqa | exact_match | edit_distance
    check_images: bool = True  # skip records whose image file does not exist


def build_jsonl(cfg: Mapping[str, Any]) -> RecordDataset:
    """The JSONL manifest written by ``knoblab export-data`` (one JSON object per line).

    Fields: ``sample_id`` (int, default the line's index), ``image`` (path relative to the
    manifest), ``image_id``, ``question``, ``answers`` (list of strings), ``metadata``.
    """
    c = to_dataclass(cfg, JsonlConfig, "dataset")
    manifest = _existing(c.path, "dataset.path")
    root, report, exists = manifest.parent, _Report(), _ImageCheck(c.check_images)
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
        if not exists(path):
            report.skip(where, f"image {image!r} not found under {root}")
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
    return RecordDataset(c.name or manifest.parent.name, c.metric, samples, skipped=report.items)


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


def _json_records(path: Path, key: str) -> tuple[dict[str, Any], list[Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
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
    report, exists = _Report(), _ImageCheck(c.check_images)
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
        if not exists(path):
            report.skip(where, f"image {fname!r} not found in {images}")
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
    return RecordDataset(name, c.metric, samples, skipped=report.items)


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
    return hf_records(ds, c.columns, str(path), root, name, c.metric)


def hf_records(
    ds: Any, columns: Mapping[str, str], label: str, root: Path, name: str, metric: str
) -> RecordDataset:
    """A ``datasets.Dataset`` as knoblab samples, through the ``columns`` mapping.

    ``label`` names the source in skip reports; relative image paths are read under ``root``.
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

    def make(_index: int, row: tuple[int, int, str, list[str], str]) -> Sample:
        i, sample_id, question, answers, image_id = row
        image = ds[i][cols["image"]]  # decodes this row's image only
        if isinstance(image, str):
            image = root / image
        elif isinstance(image, Mapping) and image.get("path") and not image.get("bytes"):
            image = root / image["path"]
        return Sample(
            sample_id=sample_id, question=question, answers=answers, image=image, image_id=image_id
        )

    return RecordDataset(name, metric, rows, make=make, skipped=report.items)


# ----------------------------------------------------------------- OmniDocBench
@dataclass
class OmniDocBenchConfig:
    """``dataset`` keys of OmniDocBench-style page OCR."""

    format: str = "omnidocbench"
    annotations: str = ""  # OmniDocBench.json, or a JSONL of {"image", "text"} pages
    images: str = ""  # the page-image folder; default: the annotation file's folder
    question: str = "Read all the text in the image."  # the question asked for every page
    name: str = "omnidocbench"
    metric: str = "edit_distance"  # scored by 1 - normalized edit distance
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


def _page_text(page: Mapping[str, Any], ignore: set[str]) -> str:
    """Ground-truth text of one OmniDocBench page: text regions in reading order."""
    dets = [
        d for d in page["layout_dets"] if d.get("category_type") not in ignore and d.get("text")
    ]
    dets.sort(key=lambda d: (d.get("order") is None, d.get("order") or 0))
    return "\n".join(str(d["text"]) for d in dets)


def build_omnidocbench(cfg: Mapping[str, Any]) -> RecordDataset:
    """Page images with ground-truth text; metric ``edit_distance``.

    ``annotations`` is either OmniDocBench's JSON (a list of pages with
    ``page_info.image_path`` and ``layout_dets`` holding ``text``, ``category_type`` and
    reading ``order``) or a JSONL with one ``{"image": ..., "text": ...}`` page per line.
    """
    c = to_dataclass(cfg, OmniDocBenchConfig, "dataset")
    ann = _existing(c.annotations, "dataset.annotations")
    images = _existing(c.images, "dataset.images", "dir") if c.images else ann.parent
    report, exists, ignore = _Report(), _ImageCheck(c.check_images), set(c.ignore_categories)
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
        try:
            data = json.loads(ann.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{ann}:{exc.lineno}: invalid JSON ({exc.msg})") from None
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
        if not exists(path):
            report.skip(where, f"image {image!r} not found in {images}")
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
    return RecordDataset(c.name, c.metric, samples, skipped=report.items)
