"""export-data: manifest.jsonl + images/, readable back, atomic, CLI with Hydra overrides."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from knoblab import cli
from knoblab.data.export import export_dataset, safe_image_name
from knoblab.data.sample import Sample
from knoblab.data.shapes import ShapesVQA
from knoblab.errors import ConfigError, DataError


def read(manifest):
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_manifest_and_images(tmp_path) -> None:
    ds = ShapesVQA(20, seed=4, variant="hard")
    manifest = export_dataset(ds, tmp_path / "out", num_samples=7, progress=False)
    assert manifest == tmp_path / "out" / "manifest.jsonl"
    rows = read(manifest)
    assert len(rows) == 7
    for i, row in enumerate(rows):
        assert set(row) == {"sample_id", "image", "image_id", "question", "answers", "metadata"}
        s = ds[i]
        assert (
            row["sample_id"] == i and row["question"] == s.question and row["answers"] == s.answers
        )
        assert row["image"] == f"images/{s.image_id}.png"
        assert (
            row["metadata"]["variant"] == "hard"
            and row["metadata"]["objects"] == s.metadata["objects"]
        )
        img = Image.open(tmp_path / "out" / row["image"])
        assert np.array_equal(np.asarray(img), np.asarray(s.image))  # PNG is lossless
    assert not (tmp_path / "out" / "manifest.jsonl.tmp").exists()


def test_reads_back_with_the_jsonl_format(tmp_path) -> None:
    from knoblab.data.registry import build_dataset

    ds = ShapesVQA(5, seed=1)
    manifest = export_dataset(ds, tmp_path / "m", progress=False)
    back = build_dataset({"format": "jsonl", "path": str(manifest)})
    assert len(back) == 5
    assert [back[i].question for i in range(5)] == [ds[i].question for i in range(5)]


def test_existing_manifest_is_kept(tmp_path) -> None:
    ds = ShapesVQA(5)
    m = export_dataset(ds, tmp_path, num_samples=2, progress=False)
    before = m.read_text()
    with pytest.raises(ConfigError, match="overwrite=true"):
        export_dataset(ds, tmp_path, num_samples=3, progress=False)
    assert m.read_text() == before
    export_dataset(ds, tmp_path, num_samples=3, overwrite=True, progress=False)
    assert len(read(m)) == 3


def test_shared_images_and_paths(tmp_path) -> None:
    src = tmp_path / "src.png"
    Image.new("RGB", (8, 6), (1, 2, 3)).save(src)

    class Two:
        name, metric = "two", "vqa"

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> Sample:
            return Sample(i, f"q{i}", ["a"], image=str(src), image_id="COCO/42:x")

    m = export_dataset(Two(), tmp_path / "o", progress=False)
    rows = read(m)
    assert {r["image"] for r in rows} == {"images/COCO_42_x.png"}
    assert len(list((tmp_path / "o" / "images").iterdir())) == 1
    assert safe_image_name("", 7) == "sample-7"


def test_bad_image_is_a_data_error(tmp_path) -> None:
    class Bad:
        name, metric = "bad", "vqa"

        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> Sample:
            return Sample(i, "q", ["a"], image=str(tmp_path / "missing.png"), image_id="x")

    with pytest.raises(DataError, match="cannot be exported"):
        export_dataset(Bad(), tmp_path / "o", progress=False)
    assert not (tmp_path / "o" / "manifest.jsonl").exists()


def test_cli_with_overrides(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    rc = cli.main(
        [
            "export-data",
            f"out_dir={out}",
            "num_samples=4",
            "dataset.variant=hard",
            "dataset.size=50",
        ]
    )
    assert rc == 0
    rows = read(out / "manifest.jsonl")
    assert len(rows) == 4 and all(r["metadata"]["variant"] == "hard" for r in rows)
    assert [r["sample_id"] for r in rows] == [0, 1, 2, 3]
    assert "wrote 4 samples" in capsys.readouterr().out


def test_cli_random_plan(tmp_path) -> None:
    out = tmp_path / "rnd"
    args = [
        f"out_dir={out}",
        "num_samples=5",
        "dataset.size=1000",
        "dataset/sampling@dataset.sampling=random",
        "dataset.sampling.seed=3",
    ]
    assert cli.main(["export-data", *args]) == 0
    ids = [r["sample_id"] for r in read(out / "manifest.jsonl")]
    assert ids != [0, 1, 2, 3, 4] and len(set(ids)) == 5


def test_cli_bad_input_is_one_line(tmp_path, capsys) -> None:
    assert cli.main(["export-data", f"out_dir={tmp_path}", "num_samples=0"]) == 2
    err = capsys.readouterr().err
    assert "num_samples=0" in err and err.count("\n") == 1
    assert cli.main(["export-data", f"out_dir={tmp_path}", "dataset.variant=medium"]) == 2
    assert "dataset.variant='medium'" in capsys.readouterr().err
