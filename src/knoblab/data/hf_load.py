"""``dataset=hf``: ``datasets.load_dataset(path, name, split)`` on local files and the local cache.

``path`` is what ``load_dataset`` takes: a packaged builder (``imagefolder``, ``parquet``,
``json``, ``csv``, ...) with ``data_dir`` / ``data_files``, a local dataset folder, or a
hub dataset id (``org/name``) already in the local Hugging Face cache (``HF_HUB_CACHE`` /
``HF_HOME``; looked up with ``local_files_only``, nothing is downloaded). ``config_name``
is ``load_dataset``'s ``name`` (``dataset.name`` stays the task name in records, as for
every format). Columns map onto knoblab's fields as for ``hf_disk`` (``dataset.columns``).

NOTE: a bare name that is neither a packaged builder nor an existing folder (e.g.
``squad``) would make ``load_dataset`` ask the hub; it is refused instead.

Usage (needs data on disk, or the dataset in the local HF cache)::

    ds = build_hf({"path": "imagefolder", "data_dir": "/data/my-vqa", "split": "test"})
    ds = build_hf({"path": "parquet", "data_files": "/data/vqa.parquet",
                   "columns": {"question": "q", "answers": "a", "image": "img"}})
    ds = build_hf({"path": "lmms-lab/textvqa", "split": "validation"})  # from the cache
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knoblab._compat.datasets import packaged_builders
from knoblab.config import to_dataclass
from knoblab.data.formats import (
    DEFAULT_MAX_IMAGE_PIXELS,
    HfDiskConfig,
    RecordDataset,
    _columns,
    hf_records,
)
from knoblab.errors import ConfigError
from knoblab.hub import cached_snapshot, is_hub_id

#: Splits tried in order when ``split`` is empty and there is more than one.
DEFAULT_SPLITS = ("validation", "test")


@dataclass
class HfConfig:
    """``dataset`` keys of ``dataset=hf`` (``datasets.load_dataset``)."""

    format: str = "hf"
    path: str = ""  # imagefolder | parquet | json | csv | ..., a local folder, or org/name (cache)
    config_name: str = ""  # load_dataset's `name`: the dataset's configuration ("" = default)
    split: str = ""  # "" = the only split, else validation, else test
    data_dir: str = ""  # load_dataset's data_dir (e.g. the imagefolder root)
    data_files: Any = None  # load_dataset's data_files: a path, a list, or {split: paths}
    name: str = ""  # task name in records; default: from data_dir / data_files / path
    metric: str = "vqa"  # a metric of knoblab.data.scoring (vqa, anls, exact_match, ...)
    columns: dict[str, str] = field(default_factory=lambda: dict(HfDiskConfig().columns))
    allow_outside_paths: bool = False  # measure image paths that leave the data folder
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS  # larger images fail their sample

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError(
                "dataset.path",
                self.path,
                "a load_dataset path: imagefolder, parquet, json, csv, a local folder or org/name",
            )


def _source(c: HfConfig) -> tuple[str, Path]:
    """``load_dataset``'s path (a cached hub id becomes its snapshot folder) and the data root."""
    local = Path(c.path).expanduser()
    if local.exists():
        return str(local), local if local.is_dir() else local.parent
    if is_hub_id(c.path):
        snap = cached_snapshot(c.path, "dataset", "dataset.path")
        return str(snap), snap
    if c.path not in packaged_builders():
        raise ConfigError(
            "dataset.path",
            c.path,
            f"a packaged builder ({', '.join(sorted(packaged_builders())[:12])}, ...), "
            "an existing folder or file, or a hub id org/name in the local HF cache",
        )
    root = Path(c.data_dir).expanduser() if c.data_dir else Path.cwd()
    files = c.data_files
    if not c.data_dir and isinstance(files, str):
        root = Path(files).expanduser().parent
    return c.path, root


def _task_name(c: HfConfig) -> str:
    if c.name:
        return c.name
    for text in (c.data_dir, c.data_files if isinstance(c.data_files, str) else ""):
        if text:
            p = Path(text).expanduser()
            return p.stem if p.is_file() else p.name
    return c.path.rstrip("/").rsplit("/", 1)[-1]


def _pick_split(loaded: Any, c: HfConfig) -> Any:
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    splits = list(loaded)
    split = splits[0] if len(splits) == 1 else next((s for s in DEFAULT_SPLITS if s in loaded), "")
    if not split:
        raise ConfigError("dataset.split", c.split, f"one of {', '.join(splits)}")
    return loaded[split]


def _load_error(exc: Exception, c: HfConfig) -> ConfigError:
    """``load_dataset``'s failure as one line naming the key the user must change."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    low = reason.lower()
    if isinstance(exc, ValueError) and "split" in low:
        return ConfigError("dataset.split", c.split, f"a split of {c.path} ({reason})")
    if isinstance(exc, ValueError) and "config" in low:
        return ConfigError("dataset.config_name", c.config_name, f"one {c.path} has ({reason})")
    return ConfigError("dataset.path", c.path, f"data load_dataset can read offline ({reason})")


def build_hf(cfg: Any) -> RecordDataset:
    """The dataset ``load_dataset`` reads for ``cfg`` (see the module docstring).

    Raises:
        ConfigError: a path it cannot read offline, an unknown split or configuration,
            or a column mapping naming a column the dataset does not have.
    """
    import datasets

    c = to_dataclass(_columns(cfg), HfConfig, "dataset")
    path, root = _source(c)
    kwargs: dict[str, Any] = {}
    for key in ("data_dir", "data_files"):
        if getattr(c, key):
            kwargs[key] = getattr(c, key)
    try:
        loaded = datasets.load_dataset(path, c.config_name or None, split=c.split or None, **kwargs)
    except (ValueError, FileNotFoundError, OSError, datasets.exceptions.DatasetNotFoundError) as e:
        raise _load_error(e, c) from None
    ds = _pick_split(loaded, c)
    return hf_records(
        ds,
        c.columns,
        c.path,
        root,
        _task_name(c),
        c.metric,
        allow_outside_paths=c.allow_outside_paths,
        max_image_pixels=c.max_image_pixels,
    )
