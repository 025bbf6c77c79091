"""Each on-disk format: a small fixture written here, loaded, scored; bad records skipped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from knoblab.data import Sample, VQADataset
from knoblab.data.formats import build_hf_disk, build_jsonl, build_omnidocbench
from knoblab.data.registry import build_dataset
from knoblab.data.scoring import score
from knoblab.errors import ConfigError, DataError


def _png(path: Path, color=(200, 30, 30), size=(16, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _check_scored(ds: VQADataset, expected_len: int) -> None:
    """Every sample opens and scores 1 against its own first answer, 0-ish against junk."""
    assert isinstance(ds, VQADataset) and len(ds) == expected_len
    for i in range(len(ds)):
        s = ds[i]
        assert isinstance(s, Sample)
        img = s.image if isinstance(s.image, Image.Image) else Image.open(s.image)
        assert img.size[0] > 0
        assert score(ds.metric, s.answers[0], s.answers) == pytest.approx(1.0)
        assert score(ds.metric, "zzzzzzzzzzzzzzzzzzzz", s.answers) < 0.5


# ------------------------------------------------------------------------ JSONL
def _manifest(tmp_path: Path) -> Path:
    lines = []
    for i, color in enumerate(["red", "blue", "green"]):
        _png(tmp_path / "images" / f"{i}.png")
        rec = {
            "sample_id": i,
            "image": f"images/{i}.png",
            "image_id": f"img{i}",
            "question": "what color is the shape?",
            "answers": [color] * 10,
            "metadata": {"question_type": "color"},
        }
        lines.append(json.dumps(rec))
    lines.insert(1, "{not json")  # line 2
    lines.append(
        json.dumps(
            {"sample_id": 7, "image": "images/missing.png", "question": "q", "answers": ["a"]}
        )
    )
    lines.append(
        json.dumps({"sample_id": 8, "image": "images/0.png", "answers": ["a"]})
    )  # no question
    dup = {"sample_id": 1, "image": "images/0.png", "question": "q", "answers": ["a"]}
    lines.append(json.dumps(dup))
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_loads_scores_and_skips_with_file_and_line(tmp_path, caplog):
    path = _manifest(tmp_path)
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="skipped 4"):
        ds = build_dataset({"format": "jsonl", "path": str(path), "sampling": {}})
    _check_scored(ds, 3)
    assert ds.name == tmp_path.name and ds.metric == "vqa"
    assert [s.sample_id for s in (ds[0], ds[1], ds[2])] == [0, 1, 2]
    assert ds[1].answers[0] == "blue" and ds[1].image_id == "img1"
    assert ds[0].metadata == {"question_type": "color"}
    where = [s.where for s in ds.skipped]
    assert where == [f"{path}:2", f"{path}:5", f"{path}:6", f"{path}:7"]
    assert "invalid JSON" in str(ds.skipped[0]) and "not found" in str(ds.skipped[1])
    assert "missing field 'question'" in str(ds.skipped[2])
    assert "duplicate sample_id 1 (first on line 3)" in str(ds.skipped[3])
    assert f"{path}:2" in caplog.text


def test_jsonl_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="dataset.path='nope.jsonl' is invalid"):
        build_jsonl({"path": "nope.jsonl"})
    with pytest.raises(ConfigError, match="did you mean dataset.metric"):
        build_jsonl({"path": str(_manifest(tmp_path)), "metrics": "vqa"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no usable sample"):
        build_jsonl({"path": str(bad)})


# --------------------------------------------------------------------- COCO-VQA
def test_coco_vqa(tmp_path):
    for image_id in (42, 73):
        _png(tmp_path / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
    questions = {
        "data_subtype": "val2014",
        "questions": [
            {"image_id": 42, "question": "What is red?", "question_id": 420},
            {"image_id": 73, "question": "How many?", "question_id": 730},
            {"image_id": 99, "question": "Missing image?", "question_id": 990},
            {"image_id": 42, "question_id": 421},  # no question text
        ],
    }
    annotations = {
        "annotations": [
            {
                "question_id": 420,
                "image_id": 42,
                "answers": [{"answer": "bus"}] * 9 + [{"answer": "car"}],
                "multiple_choice_answer": "bus",
                "answer_type": "other",
            },
            {"question_id": 730, "image_id": 73, "answers": [{"answer": "2"}] * 10},
            {"question_id": 990, "image_id": 99, "answers": [{"answer": "x"}] * 10},
        ]
    }
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "a.json").write_text(json.dumps(annotations))
    cfg = {
        "format": "coco_vqa",
        "questions": str(tmp_path / "q.json"),
        "annotations": str(tmp_path / "a.json"),
        "images": str(tmp_path / "val2014"),
    }
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = build_dataset(cfg)
    _check_scored(ds, 2)
    assert ds.name == "coco-val2014-vqa" and ds.metric == "vqa"
    s = ds[0]
    assert (s.sample_id, s.image_id, s.question) == (420, "42", "What is red?")
    assert score("vqa", "car", s.answers) == pytest.approx(
        0.3, abs=0.01
    )  # VQA's min(#humans/3, 1), averaged
    assert s.metadata["answer_type"] == "other"
    assert [sk.where for sk in ds.skipped] == [
        f"{tmp_path / 'q.json'}[questions #{i}]" for i in (2, 3)
    ]


# ----------------------------------------------------------------- HF on disk
def test_hf_disk_save_to_disk_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    imgs = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    # typed so that the image column is a datasets.Image feature; row 2 has no question,
    # row 3 no image, row 4 repeats row 0's id
    ds = datasets.Dataset.from_dict(
        {
            "img": imgs + [None, imgs[0]],
            "query": ["color?", "color?", None, "color?", "again?"],
            "label": [["red"], ["blue"], ["green"], ["x"], ["red"]],
            "qid": [10, 11, 12, 13, 10],
        },
        features=datasets.Features(
            {
                "img": datasets.Image(),
                "query": datasets.Value("string"),
                "label": datasets.Sequence(datasets.Value("string")),
                "qid": datasets.Value("int64"),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    columns = {
        "question": "query",
        "answers": "label",
        "image": "img",
        "sample_id": "qid",
        "image_id": "",
    }
    with pytest.warns(UserWarning, match="skipped 3"):
        loaded = build_dataset(
            {"format": "hf_disk", "path": str(tmp_path / "saved"), "columns": columns}
        )
    _check_scored(loaded, 2)
    assert [loaded[i].sample_id for i in range(2)] == [10, 11]
    assert loaded[1].image.getpixel((0, 0)) == (0, 0, 255)
    assert [s.where for s in loaded.skipped] == [
        f"{tmp_path / 'saved'}[row {i}]" for i in (2, 3, 4)
    ]

    ds.select([0, 1]).to_parquet(str(tmp_path / "part.parquet"))
    pq = build_hf_disk(
        {"path": str(tmp_path / "part.parquet"), "columns": columns, "metric": "exact_match"}
    )
    _check_scored(pq, 2)
    assert pq.name == "part"
    with pytest.raises(ConfigError, match="dataset.columns.question='question'"):
        build_hf_disk({"path": str(tmp_path / "part.parquet")})


# ----------------------------------------------------------------- OmniDocBench
def test_omnidocbench_json_and_jsonl(tmp_path):
    _png(tmp_path / "images" / "p1.jpg", size=(40, 60))
    pages = [
        {
            "page_info": {"image_path": "p1.jpg", "page_attribute": {"language": "english"}},
            "layout_dets": [
                {"category_type": "text_block", "text": "second", "order": 2},
                {"category_type": "title", "text": "First", "order": 1},
                {"category_type": "abandon", "text": "page 3", "order": 3},
                {"category_type": "figure", "order": 4},
            ],
        },
        {"page_info": {"image_path": "gone.jpg"}, "layout_dets": []},
        {"layout_dets": []},
    ]
    (tmp_path / "OmniDocBench.json").write_text(json.dumps(pages))
    cfg = {
        "format": "omnidocbench",
        "annotations": str(tmp_path / "OmniDocBench.json"),
        "images": str(tmp_path / "images"),
    }
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = build_dataset(cfg)
    _check_scored(ds, 1)
    assert ds.metric == "edit_similarity" and ds[0].answers == ["First\nsecond"]
    assert ds[0].metadata == {"language": "english"}
    # OmniDocBench drops the newline: "Firstsecand" vs "Firstsecond", 1 edit of 11
    assert score("edit_similarity", "First\nsecand", ds[0].answers) == pytest.approx(1 - 1 / 11)

    (tmp_path / "pages.jsonl").write_text(
        json.dumps({"image": "images/p1.jpg", "text": "hello world"})
        + "\n"
        + json.dumps({"image": 3})
        + "\n"
    )
    with pytest.warns(UserWarning, match="skipped 1"):
        simple = build_omnidocbench({"annotations": str(tmp_path / "pages.jsonl")})
    _check_scored(simple, 1)
    assert simple[0].answers == ["hello world"]
    assert simple.skipped[0].where == f"{tmp_path / 'pages.jsonl'}:2"


def test_jsonl_round_trip_of_export(tmp_path):
    """What ``knoblab export-data`` writes, the jsonl format reads back unchanged."""
    from knoblab.data.export import export_dataset
    from knoblab.data.shapes import ShapesVQA

    source = ShapesVQA(size=5, seed=3)
    manifest = export_dataset(source, tmp_path / "shapes", progress=False)
    ds = build_dataset({"format": "jsonl", "path": str(manifest)})
    assert len(ds) == 5 and not ds.skipped and ds.name == "shapes"
    for i in range(5):
        a, b = source[i], ds[i]
        assert (b.sample_id, b.question, b.answers) == (a.sample_id, a.question, a.answers)
        assert b.metadata["question_type"] == a.metadata["question_type"]
        assert Image.open(b.image).convert("RGB").tobytes() == a.image.convert("RGB").tobytes()
