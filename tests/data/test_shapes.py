"""shapes-vqa: deterministic from (seed, index), any size, answers consistent with the objects."""

from __future__ import annotations

import numpy as np
import pytest

from knoblab.data.registry import build_dataset
from knoblab.data.sample import Sample, VQADataset
from knoblab.data.shapes import CODE_MAX_LEN, COLORS, GLYPHS, ShapesVQA, build
from knoblab.errors import ConfigError, UnknownKeyError


def test_protocol_and_names() -> None:
    easy, hard = ShapesVQA(10), ShapesVQA(10, variant="hard")
    assert isinstance(easy, VQADataset)
    assert (easy.name, hard.name, easy.metric) == ("shapes-vqa", "shapes-vqa-hard", "vqa")
    s = easy[0]
    assert isinstance(s, Sample) and s.sample_id == 0
    assert len(s.answers) == 10 and s.question.endswith("?")
    assert s.metadata["variant"] == "easy"
    assert s.metadata["image_size"] == [s.image.height, s.image.width]
    assert s.metadata["question_type"] in {"count", "color", "exist", "position", "code"}


def test_deterministic_from_seed_and_index() -> None:
    a, b = ShapesVQA(50, seed=3), ShapesVQA(10**9, seed=3)  # size does not change a sample
    for i in (0, 7, 49):
        x, y = a[i], b[i]
        assert (x.question, x.answers, x.image_id) == (y.question, y.answers, y.image_id)
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
    c = ShapesVQA(50, seed=4)
    assert any(
        np.asarray(a[i].image).shape != np.asarray(c[i].image).shape
        or a[i].question != c[i].question
        for i in range(5)
    )
    assert a[-1].image_id == a[49].image_id


def test_any_size_nothing_stored() -> None:
    ds = ShapesVQA(10**12)
    assert len(ds) == 10**12
    assert ds[10**12 - 1].sample_id == 10**12 - 1
    with pytest.raises(IndexError):
        ds[10**12]


def test_aspect_ratios_span_1_3_to_3_1() -> None:
    ds = ShapesVQA(400, seed=1)
    ratios = [s.image.height / s.image.width for s in (ds[i] for i in range(400))]
    assert min(ratios) >= 1 / 3 - 0.02 and max(ratios) <= 3 + 0.1
    assert min(ratios) < 0.45 and max(ratios) > 2.2


def _check_answer(s: Sample) -> None:
    objs, q, ans = s.metadata["objects"], s.question, s.answers[0]
    t = s.metadata["question_type"]
    if t == "code":
        assert q == "what is the code ?" and s.metadata["metric"] == "anls" and objs == []
        assert ans == "".join(g["char"] for g in s.metadata["glyphs"])
        assert 1 <= len(ans) <= CODE_MAX_LEN and ans.isdigit()
        assert list(ans) == sorted(set(ans))  # distinct digits, increasing left to right
        return
    assert "metric" not in s.metadata  # the dataset's metric (vqa) applies
    if t == "count":
        shape = q.split()[2][:-1]
        assert ans == str(sum(o["shape"] == shape for o in objs))
    elif t == "color":
        shape = q.split()[-2]
        (obj,) = [o for o in objs if o["shape"] == shape]
        assert ans == obj["color"]
    elif t == "exist":
        color, shape = q.split()[-3:-1]
        assert ans == (
            "yes" if any(o["color"] == color and o["shape"] == shape for o in objs) else "no"
        )
    else:
        words = q[len("is the ") : -2].split()
        a = next(o for o in objs if (o["color"], o["shape"]) == (words[0], words[1]))
        b = next(o for o in objs if (o["color"], o["shape"]) == (words[-2], words[-1]))
        rel = " ".join(words[2:-3])
        truth = {
            "left of": a["cx"] < b["cx"],
            "right of": a["cx"] > b["cx"],
            "above": a["cy"] < b["cy"],
            "below": a["cy"] > b["cy"],
        }[rel]
        assert ans == ("yes" if truth else "no")


@pytest.mark.parametrize("variant", ["easy", "hard"])
def test_answers_follow_from_objects(variant: str) -> None:
    ds = ShapesVQA(300, seed=2, variant=variant)
    for i in range(300):
        _check_answer(ds[i])


def test_objects_are_drawn_in_their_colour() -> None:
    ds = ShapesVQA(30, seed=8)
    for i in range(30):
        s = ds[i]
        arr = np.asarray(s.image).astype(int)
        h, w = arr.shape[:2]
        for o in s.metadata["objects"]:
            px = arr[int(o["cy"] * h), int(o["cx"] * w)]
            assert np.abs(px - np.array(COLORS[o["color"]])).max() < 40


def test_codes_are_drawn_in_their_slots() -> None:
    """Each character's 3x5 glyph is inked where its metadata says, in one colour."""
    ds = ShapesVQA(60, seed=8)
    codes = [ds[i] for i in range(60) if ds[i].metadata["question_type"] == "code"]
    assert len(codes) >= 8
    for s in codes:
        arr = np.asarray(s.image).astype(int)
        h, w = arr.shape[:2]
        assert 1 / 3 - 0.02 <= h / w <= 1 / 2 + 0.02  # wide: ten slots fit
        cell = 0.92 * w / CODE_MAX_LEN / 4
        inks = set()
        for i, g in enumerate(s.metadata["glyphs"]):
            assert g["cx"] == pytest.approx((0.04 * w + (i * 4 + 1.5) * cell) / w, abs=1e-3)
            for r, row in enumerate(GLYPHS[g["char"]]):
                for c, mark in enumerate(row):  # the centre pixel of each font cell
                    y = int(g["cy"] * h + (r - 2) * cell)
                    x = int(g["cx"] * w + (c - 1) * cell)
                    px = tuple(arr[y, x])
                    if mark == "#":
                        inks.add(min(COLORS, key=lambda k: np.abs(np.array(COLORS[k]) - px).sum()))
                        assert max(px) > 150
                    else:
                        assert max(px) < 110  # background (20-70) plus noise and blur
        assert len(inks) == 1


def test_code_lengths_span_1_to_10() -> None:
    ds = ShapesVQA(800, seed=3)
    lengths = {
        len(ds[i].answers[0]) for i in range(800) if ds[i].metadata["question_type"] == "code"
    }
    assert lengths == set(range(1, CODE_MAX_LEN + 1))


def test_hard_has_smaller_and_more_objects() -> None:
    e, h = ShapesVQA(200, seed=1), ShapesVQA(200, seed=1, variant="hard")
    ne = np.mean([len(e[i].metadata["objects"]) for i in range(200) if e[i].metadata["objects"]])
    nh = np.mean([len(h[i].metadata["objects"]) for i in range(200) if h[i].metadata["objects"]])
    se = np.mean([o["size"] for i in range(200) for o in e[i].metadata["objects"]])
    sh = np.mean([o["size"] for i in range(200) for o in h[i].metadata["objects"]])
    assert nh > ne + 1.5 and sh < se * 0.8


def test_question_mix_and_balanced_yes_no() -> None:
    ds = ShapesVQA(600, seed=5)
    types, yes, no = {}, 0, 0
    for i in range(600):
        s = ds[i]
        types[s.metadata["question_type"]] = types.get(s.metadata["question_type"], 0) + 1
        yes += s.answers[0] == "yes"
        no += s.answers[0] == "no"
    assert set(types) == {"count", "color", "exist", "position", "code"}
    assert min(types.values()) > 60
    assert 0.2 < types["code"] / 600 < 0.3  # CODE_SHARE = 0.25
    assert 0.4 < yes / (yes + no) < 0.6


def test_build_and_registry() -> None:
    ds = build_dataset(
        {"format": "shapes", "name": "shapes-vqa-hard", "size": 12, "seed": 1, "variant": "hard"}
    )
    assert isinstance(ds, ShapesVQA) and len(ds) == 12 and ds.variant == "hard"
    assert build({"size": 3}).variant == "easy"


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"size": 0}, "dataset.size"),
        ({"variant": "medium"}, "dataset.variant"),
        ({"seed": "x"}, "dataset.seed"),
        ({"sise": 3}, "dataset.sise"),
    ],
)
def test_bad_config(cfg: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        build(cfg)
    assert e.value.key == key
    if isinstance(e.value, UnknownKeyError):
        assert "did you mean dataset.size" in str(e.value)
