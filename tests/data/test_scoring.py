"""Scoring: each metric against a table of cases computed by hand from its official rules.

Sources: VQA v2 ``vqaEval.py`` (GT-Vision-Lab/VQA), ANLS (Biten et al. 2019, ST-VQA /
DocVQA), ChartQA relaxed accuracy (Masry et al. 2022; pix2struct ``relaxed_correctness``),
OmniDocBench ``call_Edit_dist`` + ``clean_string``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knoblab.data.scoring import (
    ALIASES,
    CONTRACTIONS,
    METRICS,
    anls,
    edit_similarity,
    exact_match,
    exact_match_normalized,
    levenshtein,
    normalize_answer,
    normalized_edit_distance,
    omnidocbench_normalize,
    page_edit_distance,
    process_punctuation,
    relaxed_accuracy,
    resolve_metric,
    score,
    vqa_accuracy,
    vqa_accuracy_lenient,
)
from knoblab.errors import ConfigError

TEN = 10

# -- vqa: the official vqaEval.py ---------------------------------------------------------------
# prediction: whitespace + processPunctuation + processDigitArticle; ground truths:
# processPunctuation only when they are not all equal; mean over leave-one-out of
# min(1, matches among the other nine / 3).
VQA_CASES = [
    # the two cases
    ("1", ["one"] * 3 + ["1"] + ["2"] * 6, 0.3),  # gts differ, "one" stays "one": 1 match
    ("2", ["two"] * TEN, 0.0),  # gts equal: compared raw
    ("two", ["2"] * TEN, 1.0),  # the prediction's number word becomes "2"
    ("Two.", ["2"] * TEN, 1.0),
    ("2", ["2"] * TEN, 1.0),
    ("3", ["2"] * TEN, 0.0),
    # k matching answers of 10: k see k-1 others, 10-k see k
    ("3", ["2"] * 9 + ["3"], 9 * (1 / 3) / 10),  # 0.3
    ("3", ["2"] * 8 + ["3"] * 2, (8 * (2 / 3) + 2 * (1 / 3)) / 10),  # 0.6
    ("3", ["2"] * 7 + ["3"] * 3, (7 * 1 + 3 * (2 / 3)) / 10),  # 0.9
    ("3", ["2"] * 6 + ["3"] * 4, 1.0),
    ("cat", ["cat", "dog", "cat"], (1 / 3 + 2 / 3 + 1 / 3) / 3),
    # empty predictions (the issue: "" scored 1.0 against "A")
    ("", ["A"] * TEN, 0.0),
    ("   ", ["yes"] * TEN, 0.0),
    ("", ["a"] + ["b"] * 9, 0.0),
    # a prediction of an article normalises to "" and matches nothing
    ("A", ["a"] * TEN, 0.0),
    # ground-truth punctuation is processed only when the answers differ
    ("yes", ["yes."] * 5 + ["yes"] * 5, 1.0),
    ("yes", ["yes."] * TEN, 0.0),
    # ground truths keep their articles: "the dog" != "dog"
    ("dog", ["the dog"] * 8 + ["dog"] * 2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # 0.6
    ("the dog", ["dog"] * TEN, 1.0),
    # the official contraction table, oddities included
    ("im", ["im"] * TEN, 1.0),  # "Im" is a capitalised key: never applied
    ("ive", ["i've"] * TEN, 0.0),
    ("lets", ["lets"] * TEN, 1.0),  # only "let's" -> "let's"
    ("shes", ["shes"] * TEN, 1.0),
    ("somebodyd", ["somebodyd"] * TEN, 1.0),
    ("somebody'd", ["somebodyd"] * TEN, 1.0),  # "somebody'd" -> "somebodyd"
    ("dont", ["don't"] * TEN, 1.0),
    ("hes", ["he's"] * TEN, 1.0),
    # punctuation
    ("left-right", ["left right"] * TEN, 1.0),  # glued: becomes a space
    ("1,000", ["1000"] * TEN, 1.0),  # digit,digit: punctuation removed
    ("3.5", ["3.5"] * TEN, 1.0),  # a period before a digit stays
    ("yes" + "." * 40, ["yes" + "." * 8] * TEN, 1.0),  # at most 32 periods go
    # a single answer: match or not
    ("yes", ["yes"], 1.0),
    ("no", ["yes"], 0.0),
]


@pytest.mark.parametrize("pred, answers, expected", VQA_CASES)
def test_vqa_official_table(pred: str, answers: list[str], expected: float) -> None:
    assert vqa_accuracy(pred, answers) == pytest.approx(expected)
    assert score("vqa", pred, answers) == pytest.approx(expected)


def _loo_textbook(pred: str, gts: list[str]) -> float:
    accs = []
    for i in range(len(gts)):
        others = [g for j, g in enumerate(gts) if j != i]
        accs.append(min(1.0, sum(g == pred for g in others) / 3))
    return sum(accs) / len(accs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["2", "3", "red", "yes"]), min_size=2, max_size=12))
def test_vqa_leave_one_out_matches_the_textbook_loop(answers: list[str]) -> None:
    assert vqa_accuracy("2", answers) == pytest.approx(_loo_textbook("2", answers))


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
        ("couldntve", "couldntve"),  # not in the official table
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("left-right", "left right"),
        ("left - right", "left right"),
        ("  yes\n", "yes"),
        ("ten apples", "10 apples"),
        ("im", "im"),
        ("lets", "lets"),
    ],
)
def test_prediction_normalisation(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize(
    "raw, out",
    [("yes.", "yes"), ("a/b", "a b"), ("a / b", "a  b"), ("1,000.5", "1000.5"), ("it's", "it's")],
)
def test_process_punctuation(raw: str, out: str) -> None:
    assert process_punctuation(raw) == out


def test_contraction_table_is_the_official_one() -> None:
    # Spot checks against vqaEval.py's table (identical to it, all 120 entries, checked when written).
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["somebody'd"] == "somebodyd"
    assert CONTRACTIONS["let's"] == "let's" and CONTRACTIONS["she's"] == "she's"
    assert "im" not in CONTRACTIONS and "Im" in CONTRACTIONS
    assert "lets" not in CONTRACTIONS and "shes" not in CONTRACTIONS


VQA_LENIENT_CASES = [
    ("2", ["Two."] * TEN, 1.0),
    ("2", ["two"] * TEN, 1.0),
    ("1", ["one"] * 3 + ["1"] + ["2"] * 6, 1.0),  # 4 matches
    ("dog", ["the dog"] * TEN, 1.0),
    ("", ["A"] * TEN, 0.0),
    ("a", ["A"] * TEN, 1.0),  # both normalise to "": compared as written
    ("the", ["A"] * TEN, 0.0),
    ("3", ["2"] * 9 + ["3"], 0.3),
]


@pytest.mark.parametrize("pred, answers, expected", VQA_LENIENT_CASES)
def test_vqa_lenient_table(pred: str, answers: list[str], expected: float) -> None:
    assert vqa_accuracy_lenient(pred, answers) == pytest.approx(expected)
    assert score("vqa_lenient", pred, answers) == pytest.approx(expected)


# -- exact match ----------------------------------------------------------------------------------
EXACT_CASES = [
    ("Red", ["red"], 0.0, 1.0),
    ("red", [" red "], 1.0, 1.0),
    ("A-1", ["1"], 0.0, 1.0),  # normalised: "a 1" -> "1"
    ("none", ["0"], 0.0, 1.0),
    ("", ["A"], 0.0, 0.0),  # the issue: 1.0 before
    ("", [""], 1.0, 1.0),
    ("  ", ["the"], 0.0, 0.0),
    ("abc", ["x", "abc"], 1.0, 1.0),
    ("two", ["2", "1"], 0.0, 1.0),
    ("red circle", ["red"], 0.0, 0.0),
    ("a", ["A"], 0.0, 1.0),
    ("the", ["a"], 0.0, 0.0),
]


@pytest.mark.parametrize("pred, answers, strict, normalised", EXACT_CASES)
def test_exact_match_tables(
    pred: str, answers: list[str], strict: float, normalised: float
) -> None:
    assert exact_match(pred, answers) == strict == score("exact_match", pred, answers)
    assert exact_match_normalized(pred, answers) == normalised
    assert score("exact_match_normalized", pred, answers) == normalised


# -- ANLS -------------------------------------------------------------------------------------------
ANLS_CASES = [
    ("abcd", ["abxy"], 0.0),  # NL = 0.5: not < 0.5
    ("Hello", ["hello"], 1.0),  # case-folded
    (" hello ", ["Hello"], 1.0),  # stripped
    ("kitten", ["sitting"], 1 - 3 / 7),
    ("abc", ["abd"], 1 - 1 / 3),
    ("ab", ["abc"], 1 - 1 / 3),
    ("abcdef", ["abcxyz"], 0.0),  # NL = 0.5
    ("abcdefg", ["abcdxyz"], 1 - 3 / 7),
    ("abcde", ["zzzzz", "abcdx"], 0.8),  # best over the ground truths
    ("", ["A"], 0.0),
    ("", [""], 1.0),
    ("xyz", ["abc"], 0.0),
]


@pytest.mark.parametrize("pred, answers, expected", ANLS_CASES)
def test_anls_table(pred: str, answers: list[str], expected: float) -> None:
    assert anls(pred, answers) == pytest.approx(expected)
    assert score("anls", pred, answers) == pytest.approx(expected)


# -- ChartQA relaxed accuracy -------------------------------------------------------------------
RELAXED_CASES = [
    ("10.4", ["10"], 1.0),  # 4 %
    ("10.5", ["10"], 1.0),  # exactly 5 %
    ("10.6", ["10"], 0.0),  # 6 %
    ("9.5", ["10"], 1.0),
    ("-5", ["5"], 0.0),
    ("50%", ["0.5"], 1.0),  # a percentage is a fraction
    ("50", ["50%"], 0.0),  # 50 vs 0.5
    ("1e3", ["1000"], 1.0),
    ("0.0", ["0"], 0.0),  # an answer of 0 is matched as a string
    ("0", ["0"], 1.0),
    ("Yes", ["yes"], 1.0),  # non-numeric: case-insensitive equality
    ("yes ", ["yes"], 1.0),
    ("1,000", ["1000"], 0.0),  # not a float: string equality
    ("Paris", ["paris", "London"], 1.0),
    ("12", ["abc", "12.3"], 1.0),
    ("", ["A"], 0.0),
    ("", [""], 1.0),
]


@pytest.mark.parametrize("pred, answers, expected", RELAXED_CASES)
def test_relaxed_accuracy_table(pred: str, answers: list[str], expected: float) -> None:
    assert relaxed_accuracy(pred, answers) == expected
    assert score("relaxed_accuracy", pred, answers) == expected


# -- OmniDocBench page edit distance ------------------------------------------------------------
EDIT_CASES = [
    ("Hello, world!", ["hello world"], 0.9),  # "Helloworld" vs "helloworld": 1 edit of 10
    ("abc", ["abc"], 1.0),
    ("", ["abc"], 0.0),
    ("", [""], 1.0),
    ("a b\nc", ["abc"], 1.0),  # whitespace goes
    ("a\\nb", ["ab"], 1.0),  # so does a literal "\n"
    ("   ", ["!!!"], 0.0),  # blank prediction, non-blank answer
    ("abcd", ["abxy", "abcx"], 0.75),
    ("漢字ab", ["漢字ac"], 0.75),
    ("xyz", ["abc"], 0.0),
]


@pytest.mark.parametrize("pred, answers, expected", EDIT_CASES)
def test_edit_similarity_table(pred: str, answers: list[str], expected: float) -> None:
    assert edit_similarity(pred, answers) == pytest.approx(expected)
    assert score("edit_similarity", pred, answers) == pytest.approx(expected)
    assert score("edit_distance", pred, answers) == pytest.approx(expected)  # the old name


def test_omnidocbench_normalisation_and_page_distance() -> None:
    assert omnidocbench_normalize("Hello, world!\n\tx_1 /n") == "Helloworldx_1"
    assert page_edit_distance("Hello, world!", "hello world") == pytest.approx(0.1)
    assert page_edit_distance("", "") == 0.0


@pytest.mark.parametrize(
    "a, b, d",
    [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("ab", "ba", 2)],
)
def test_levenshtein(a: str, b: str, d: int) -> None:
    assert levenshtein(a, b) == d == levenshtein(b, a)


def test_normalized_edit_distance() -> None:
    assert normalized_edit_distance("", "") == 0.0
    assert normalized_edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert normalized_edit_distance("abc", "xyz") == 1.0
    assert normalized_edit_distance("Hello", "hello") == pytest.approx(0.2)  # no folding


# -- rules every metric obeys -------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    blank=st.sampled_from(["", " ", "\n", "\t  "]),
    answers=st.lists(st.text("aA1.!, -").filter(lambda s: s.strip()), min_size=1, max_size=10),
)
def test_blank_prediction_scores_zero(metric: str, blank: str, answers: list[str]) -> None:
    assert score(metric, blank, answers) == 0.0


@settings(max_examples=100, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    pred=st.text(max_size=12),
    answers=st.lists(st.text(max_size=12), min_size=1, max_size=10),
)
def test_scores_lie_in_unit_interval(metric: str, pred: str, answers: list[str]) -> None:
    assert 0.0 <= score(metric, pred, answers) <= 1.0


def test_score_dispatch_errors() -> None:
    with pytest.raises(
        ConfigError,
        match=r"metric='bleu' is invalid: allowed is one of vqa, vqa_lenient, exact_match",
    ):
        score("bleu", "a", ["a"])
    with pytest.raises(ConfigError, match="answers"):
        score("vqa", "a", [])
    assert resolve_metric("edit_distance") == "edit_similarity" == ALIASES["edit_distance"]
    with pytest.raises(ConfigError, match="dataset.metric='nope'"):
        resolve_metric("nope", "dataset.metric")
