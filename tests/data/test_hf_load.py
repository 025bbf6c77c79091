"""dataset=hf: load_dataset on local imagefolder / parquet / json and a fake hub cache, offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from knoblab.data.registry import build_dataset
from knoblab.errors import ConfigError
from knoblab.hydra_utils import compose

REV = "fedcba9876543210fedcba9876543210fedcba98"
COLORS = [(220, 30, 30), (30, 220, 30), (30, 30, 220)]


@pytest.fixture
def folder(tmp_path):
    """An imagefolder dataset: test/{0,1,2}.png + metadata.jsonl with question and answers."""
    root = tmp_path / "my-vqa"
    (root / "test").mkdir(parents=True)
    rows = []
    for i, color in enumerate(COLORS):
        Image.new("RGB", (16, 16), color).save(root / "test" / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "question": f"q{i} ?", "answers": [f"a{i}"]})
    (root / "test" / "metadata.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    return root


def test_imagefolder(folder):
    ds = build_dataset({"format": "hf", "path": "imagefolder", "data_dir": str(folder)})
    assert (ds.name, ds.metric, len(ds)) == ("my-vqa", "vqa", 3)
    got = {ds[i].question: (ds[i].answers, _pixel(ds[i].image)) for i in range(3)}
    assert got == {f"q{i} ?": ([f"a{i}"], COLORS[i]) for i in range(3)}


def _pixel(image):
    """The top-left pixel of a sample's image: a file path (read undecoded, checked against
    the data folder and the pixel cap) or a PIL image."""
    if not hasattr(image, "getpixel"):
        assert Path(image).is_file(), image
        image = Image.open(image).convert("RGB")
    return image.getpixel((0, 0))


def _table(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i, color in enumerate(COLORS[:2]):
        Image.new("RGB", (8, 8), color).save(tmp_path / "imgs" / f"{i}.png")
    return pd.DataFrame(
        {"q": ["red ?", "green ?"], "a": [["red"], ["green"]], "img": ["imgs/0.png", "imgs/1.png"]}
    )


COLUMNS = {"question": "q", "answers": "a", "image": "img"}


def test_parquet_and_json_with_a_column_mapping(tmp_path):
    table = _table(tmp_path)
    table.to_parquet(tmp_path / "vqa.parquet")
    table.to_json(tmp_path / "vqa.jsonl", orient="records", lines=True)
    for fmt, file in (("parquet", "vqa.parquet"), ("json", "vqa.jsonl")):
        cfg = {"format": "hf", "path": fmt, "data_files": str(tmp_path / file), "columns": COLUMNS}
        ds = build_dataset(cfg | {"metric": "exact_match"})
        assert (ds.name, ds.metric, len(ds)) == ("vqa", "exact_match", 2)
        s = ds[1]
        assert (s.sample_id, s.question, s.answers) == (1, "green ?", ["green"])
        assert s.image == tmp_path / "imgs" / "1.png"  # relative to the data file
    with pytest.raises(ConfigError, match=r"dataset.columns.question='question' .* q, a, img"):
        build_dataset(
            {"format": "hf", "path": "parquet", "data_files": str(tmp_path / "vqa.parquet")}
        )
    with pytest.raises(
        ConfigError, match=r"dataset.path='parquet' is invalid: allowed is data load"
    ):
        build_dataset(
            {"format": "hf", "path": "parquet", "data_files": str(tmp_path / "vqa.jsonl")}
        )


def test_hub_id_from_a_fake_cache_only(tmp_path, monkeypatch):
    table = _table(tmp_path)
    snap = tmp_path / "hub" / "datasets--tiny-org--tiny-vqa" / "snapshots" / REV
    (snap / "data").mkdir(parents=True)
    table.to_parquet(snap / "data" / "validation-00000-of-00001.parquet")
    shutil.copytree(tmp_path / "imgs", snap / "imgs")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text(REV)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ds = build_dataset({"format": "hf", "path": "tiny-org/tiny-vqa", "columns": COLUMNS})
    assert (ds.name, len(ds)) == ("tiny-vqa", 2) and ds[0].image == snap / "imgs" / "0.png"
    with pytest.raises(ConfigError) as err:
        build_dataset({"format": "hf", "path": "tiny-org/absent"})
    msg = str(err.value)
    assert "\n" not in msg and "nothing is downloaded" in msg
    assert str(tmp_path / "hub" / "datasets--tiny-org--absent") in msg


def test_bad_paths_and_splits_are_one_line_errors(folder):
    with pytest.raises(
        ConfigError, match=r"dataset.path='squad' is invalid: allowed is a packaged"
    ):
        build_dataset({"format": "hf", "path": "squad"})  # would ask the hub: refused
    with pytest.raises(ConfigError, match=r"dataset.path='' is invalid"):
        build_dataset({"format": "hf"})
    with pytest.raises(ConfigError, match=r"dataset.split='train' is invalid") as err:
        build_dataset(
            {"format": "hf", "path": "imagefolder", "data_dir": str(folder), "split": "train"}
        )
    assert "\n" not in str(err.value)


def test_shipped_preset_composes(folder):
    cfg = compose(
        "profile", ["dataset=hf", "dataset.path=imagefolder", f"dataset.data_dir={folder}"]
    )
    ds = build_dataset(cfg.dataset)
    assert len(ds) == 3 and cfg.dataset.prompt.post is None
