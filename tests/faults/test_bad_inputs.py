"""Bad dataset inputs: odd bytes, foreign encodings, paths out of the folder, huge images.

Each fails only what it must (a line, a sample), with one line naming where, and never
with a traceback.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from knoblab import cli
from knoblab.data.formats import SampleDataError, build_hf_disk, build_jsonl
from knoblab.errors import ConfigError, DataError
from knoblab.profiling import records as rec

QUESTION = {"question": "What color is the circle?", "answers": ["red"]}


def _image(path: Path, size: tuple[int, int] = (8, 8), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)
    return path


def _manifest(folder: Path, rows: list[dict[str, Any]]) -> Path:
    for r in rows:
        if not r["image"].startswith(("/", "..")):
            _image(folder / r["image"])
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps({**QUESTION, **r}) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"sample_id": 10 + i, "image": f"images/{i}.png"} for i in range(n)]


def test_non_utf8_byte_skips_that_line_only(tmp_path: Path, caplog: Any) -> None:
    path = _manifest(tmp_path / "ds", _rows(4))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"circle", b"circ\xe9le")  # latin-1 in a UTF-8 file
    path.write_bytes(b"".join(lines))
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="skipped 1"):
        ds = build_jsonl({"path": str(path)})
    assert [ds[i].sample_id for i in range(len(ds))] == [10, 12, 13]  # the others all kept
    assert f"{path}:2: not UTF-8 (byte 0xe9" in caplog.text


def test_utf16_manifest_with_bom_is_decoded(tmp_path: Path) -> None:
    path = _manifest(tmp_path / "ds", _rows(3))
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))  # BOM + UTF-16-LE
    ds = build_jsonl({"path": str(path)})
    assert [ds[i].sample_id for i in range(len(ds))] == [10, 11, 12]
    assert ds[0].question == QUESTION["question"]


def test_utf16_manifest_without_bom_is_one_line(tmp_path: Path) -> None:
    path = _manifest(tmp_path / "ds", _rows(3))
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16-le"))
    with pytest.raises(DataError, match="not UTF-8.*UTF-16") as info:
        build_jsonl({"path": str(path)})
    assert "\n" not in str(info.value)


def test_profile_cli_on_utf16_without_bom(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    path = _manifest(tmp_path / "ds", _rows(3))
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16-le"))
    monkeypatch.chdir(tmp_path)
    code = cli.main(["profile", "dataset=jsonl", f"dataset.path={path}", "run.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "save the manifest as UTF-8" in err
    assert not (tmp_path / "results").exists()  # nothing written


def _outside_setup(tmp_path: Path) -> tuple[Path, Path]:
    ds = tmp_path / "ds"
    secret = _image(tmp_path / "secret" / "s.png")
    (ds / "images").mkdir(parents=True)
    (ds / "images" / "link.png").symlink_to(secret)
    inside = _image(ds / "images" / "real.png")
    (ds / "images" / "inside_link.png").symlink_to(inside)
    rows = [
        {"sample_id": 1, "image": "../secret/s.png"},
        {"sample_id": 2, "image": str(secret)},
        {"sample_id": 3, "image": "images/link.png"},
        {"sample_id": 4, "image": "images/real.png"},
        {"sample_id": 5, "image": "images/inside_link.png"},
        {"sample_id": 6, "image": "images/../images/real.png"},
    ]
    path = ds / "manifest.jsonl"
    path.write_text("".join(json.dumps({**QUESTION, **r}) + "\n" for r in rows))
    return path, secret


def test_paths_leaving_the_dataset_folder_are_refused(tmp_path: Path, caplog: Any) -> None:
    path, _ = _outside_setup(tmp_path)
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="skipped 3"):
        ds = build_jsonl({"path": str(path)})
    assert sorted(ds[i].sample_id for i in range(len(ds))) == [4, 5, 6]
    for line in (1, 2, 3):
        assert f"{path}:{line}: image" in caplog.text
    assert caplog.text.count("leaves the dataset folder") == 3
    assert "dataset.allow_outside_paths=true" in caplog.text


def test_allow_outside_paths_opts_in(tmp_path: Path) -> None:
    path, _ = _outside_setup(tmp_path)
    ds = build_jsonl({"path": str(path), "allow_outside_paths": True})
    assert sorted(ds[i].sample_id for i in range(len(ds))) == [1, 2, 3, 4, 5, 6]


def test_pixel_cap_fails_that_sample_only(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    path = _manifest(folder, _rows(3))
    _image(folder / "images" / "1.png", (40, 30))  # 1200 pixels
    ds = build_jsonl({"path": str(path), "max_image_pixels": 1000})
    assert len(ds) == 3 and ds[0].sample_id == 10 and ds[2].sample_id == 12
    with pytest.raises(SampleDataError, match=r"40x30 .* over dataset.max_image_pixels=1000") as e:
        ds[1]
    assert e.value.sample_id == 11
    assert len(build_jsonl({"path": str(path), "max_image_pixels": None})) == 3
    with pytest.raises(ConfigError, match="dataset.max_image_pixels=0"):
        build_jsonl({"path": str(path), "max_image_pixels": 0})


def test_default_pixel_cap_refuses_a_decompression_bomb(tmp_path: Path) -> None:
    """A 8200x8200 bilevel PNG is tiny on disk; 67 MP is over the 64 MP default."""
    folder = tmp_path / "ds"
    path = _manifest(folder, _rows(2))
    _image(folder / "images" / "0.png", (8200, 8200), mode="1")
    assert (folder / "images" / "0.png").stat().st_size < 2_000_000
    ds = build_jsonl({"path": str(path)})
    with pytest.raises(SampleDataError, match=r"8200x8200 = 67.2 MP"):
        ds[0]
    assert ds[1].sample_id == 11


def test_profile_records_the_too_large_sample_as_failed(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    folder = tmp_path / "ds"
    path = _manifest(folder, _rows(3))
    _image(folder / "images" / "1.png", (64, 64))
    monkeypatch.chdir(tmp_path)
    code = cli.main(
        [
            "profile",
            "dataset=jsonl",
            f"dataset.path={path}",
            "dataset.max_image_pixels=1000",
            "dataset.sampling.num_samples_per_epoch=3",
            "design=full",
            "knobs.tier=[low]",
            "knobs.top_k=[1]",
            "knobs.num_active_blocks=[2]",
            "run.warmup_runs=0",
            "run.progress=false",
            "run.output_dir=out",
        ]
    )
    assert code == 0, capsys.readouterr().err
    (record,) = rec.load_records(tmp_path / "out" / "ds").values()
    rows = {s["sample_id"]: s for s in record["per_sample_results"]}
    assert sorted(rows) == [10, 11, 12]
    assert rows[11]["status"] == "failed" and "64x64" in rows[11]["error"]
    assert rows[10]["status"] == rows[12]["status"] == "ok"


def _hf_with_corrupt_row(tmp_path: Path) -> Path:
    datasets = pytest.importorskip("datasets")

    def png(color: tuple[int, int, int]) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), color).save(buf, format="PNG")
        return buf.getvalue()

    images = [
        {"bytes": png((255, 0, 0)), "path": None},
        {"bytes": b"\x89PNG not really", "path": None},
        {"bytes": png((0, 0, 255)), "path": None},
    ]
    ds = datasets.Dataset.from_dict(
        {
            "qid": [500, 501, 502],
            "question": ["q a", "q b", "q c"],
            "answers": [["red"], ["x"], ["blue"]],
            "image": images,
        },
        features=datasets.Features(
            {
                "qid": datasets.Value("int64"),
                "question": datasets.Value("string"),
                "answers": datasets.Sequence(datasets.Value("string")),
                "image": datasets.Image(),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "hf"))
    return tmp_path / "hf"


def test_hf_disk_corrupt_row_keeps_its_real_id_and_names_the_row(tmp_path: Path) -> None:
    path = _hf_with_corrupt_row(tmp_path)
    ds = build_hf_disk({"path": str(path), "columns": {"sample_id": "qid"}})
    assert ds[0].sample_id == 500 and ds[2].sample_id == 502
    with pytest.raises(SampleDataError, match=r"\[row 1\] \(sample_id 501\): image cannot be"):
        ds[1]


def test_hf_disk_failed_sample_in_a_sweep_has_its_real_id(tmp_path: Path) -> None:
    from knoblab.profiling.runner import run_sweep
    from knoblab.profiling.synthetic import WaitAdapter

    path = _hf_with_corrupt_row(tmp_path)
    ds = build_hf_disk({"path": str(path), "columns": {"sample_id": "qid"}})
    cfg = {
        "dataset": {"name": "hf", "sampling": {"num_samples_per_epoch": 3}},
        "knobs": {"tier": ["low"], "top_k": [1], "num_active_blocks": [2]},
        "design": {"name": "full"},
        "run": {"output_dir": str(tmp_path / "out"), "warmup_runs": 0, "progress": False},
    }
    result = run_sweep(cfg, adapter=WaitAdapter(), dataset=ds)
    (record,) = result.records.values()
    rows = record["per_sample_results"]
    assert [s["sample_id"] for s in rows] == [500, 501, 502]  # never the index 1
    assert rows[1]["status"] == "failed" and "[row 1]" in rows[1]["error"]


def test_coco_questions_file_not_utf8_is_one_line(tmp_path: Path) -> None:
    from knoblab.data.formats import build_coco_vqa

    (tmp_path / "images").mkdir()
    questions = tmp_path / "q.json"
    questions.write_bytes(
        b'{"questions": [{"question_id": 1, "image_id": 1, "question": "caf\xe9"}]}'
    )
    with pytest.raises(DataError, match=r"q.json: not UTF-8 \(byte 0xe9 at offset 65\)") as info:
        build_coco_vqa({"questions": str(questions), "images": str(tmp_path / "images")})
    assert "\n" not in str(info.value)
