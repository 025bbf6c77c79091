"""Scoring: VQAv2 accuracy against hand-computed cases, normalisation, exact match, edit distance."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knoblab.data.scoring import (
    exact_match,
    levenshtein,
    normalize_answer,
    normalized_edit_distance,
    score,
    vqa_accuracy,
)
from knoblab.errors import ConfigError


@pytest.mark.parametrize(
    "pred, answers, expected",
    [
        ("2", ["2"] * 10, 1.0),
        ("3", ["2"] * 10, 0.0),
        # k of 10 answers match: k answers see k-1 others, 10-k see k (min(1, ./3), mean).
        ("3", ["2"] * 9 + ["3"], (9 * (1 / 3) + 1 * 0) / 10),  # 0.3
        ("3", ["2"] * 8 + ["3"] * 2, (8 * (2 / 3) + 2 * (1 / 3)) / 10),  # 0.6
        ("3", ["2"] * 7 + ["3"] * 3, (7 * 1 + 3 * (2 / 3)) / 10),  # 0.9
        ("3", ["2"] * 6 + ["3"] * 4, 1.0),
        ("2", ["2"] * 6 + ["3"] * 4, 1.0),
        ("cat", ["cat", "dog", "cat"], (1 / 3 + 2 / 3 + 1 / 3) / 3),
        ("yes", ["yes"], 1.0),  # single answer: match or not
        ("no", ["yes"], 0.0),
    ],
)
def test_vqa_accuracy_hand_computed(pred: str, answers: list[str], expected: float) -> None:
    assert vqa_accuracy(pred, answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("Two", "2"),
        ("none", "0"),
        ("The Cat.", "cat"),
        ("a red circle", "red circle"),
        ("Yes!", "yes"),
        ("dont", "don't"),
        ("isnt it", "isn't it"),
        ("couldnt've", "couldn't've"),
        ("1,000", "1000"),  # comma between digits: punctuation removed, not spaced
        ("3.5", "3.5"),  # period before a digit kept
        ("left-right", "left right"),  # glued punctuation becomes a space
        ("left - right", "left right"),
        ("  yes\n", "yes"),
        ("ten apples", "10 apples"),
    ],
)
def test_normalisation(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


def test_normalisation_applies_to_both_sides() -> None:
    assert vqa_accuracy("two", ["2"] * 10) == 1.0
    assert vqa_accuracy("2", ["Two."] * 10) == 1.0
    assert vqa_accuracy("the dog", ["dog"] * 10) == 1.0


def test_exact_match() -> None:
    assert exact_match("Red", ["red"]) == 1.0
    assert exact_match("red circle", ["red"]) == 0.0
    assert exact_match("2", ["1", "two"]) == 1.0


@pytest.mark.parametrize(
    "a, b, d",
    [
        ("", "", 0),
        ("abc", "", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("same", "same", 0),
        ("ab", "ba", 2),
    ],
)
def test_levenshtein(a: str, b: str, d: int) -> None:
    assert levenshtein(a, b) == d == levenshtein(b, a)


def _dp(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@settings(max_examples=300, deadline=None)
@given(st.text("abcé ", max_size=12), st.text("abcé ", max_size=12))
def test_levenshtein_matches_textbook_dp(a: str, b: str) -> None:
    assert levenshtein(a, b) == _dp(a, b)


def test_normalized_edit_distance() -> None:
    assert normalized_edit_distance("", "") == 0.0
    assert normalized_edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert normalized_edit_distance("abc", "xyz") == 1.0


def test_score_dispatch() -> None:
    assert score("vqa", "two", ["2"] * 10) == 1.0
    assert score("exact_match", "two", ["2"]) == 1.0
    assert score("edit_distance", "kitten", ["sitting", "kitten!"]) == pytest.approx(1 - 1 / 7)
    with pytest.raises(ConfigError, match="metric='bleu'.*vqa, exact_match, edit_distance"):
        score("bleu", "a", ["a"])
    with pytest.raises(ConfigError, match="answers"):
        score("vqa", "a", [])
