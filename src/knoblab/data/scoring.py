"""Answer scoring: VQAv2 accuracy, exact match and normalised edit distance.

``score(metric, pred, answers)`` is what the sweep runner calls per sample; every
metric returns a number in [0, 1] where **higher is better**:

* ``"vqa"``: VQAv2 accuracy. For each of the ground-truth answers, ``min(1, number of
  the OTHER answers equal to the prediction / 3)``; the mean over all of them (with 10
  answers: 3 or more matches score 1, two matches 0.6 (wait: see below), one 0.3).
  Answers and prediction pass through the official normalisation first.
* ``"exact_match"``: 1.0 when the normalised prediction equals any normalised answer.
* ``"edit_distance"``: ``1 - min(normalized_edit_distance(pred, a))`` over the answers,
  i.e. a similarity, so that it sorts like an accuracy (OmniDocBench reports the
  distance itself; ``normalized_edit_distance`` gives it).

Official normalisation (VQA evaluation code, ``vqaEval.py``): newlines and tabs become
spaces; punctuation is removed (or becomes a space when it is glued between words and
no ``digit,digit`` occurs); periods not followed by a digit are removed; lower case;
number words ``none``/``zero``..``ten`` become digits; the articles ``a``, ``an``,
``the`` are dropped; apostrophe-less contractions (``dont``) get their apostrophe.

NOTE: the official script normalises the ground-truth answers' punctuation only when
they disagree; here both sides are always normalised, which can only turn a spurious
mismatch (``"yes."`` vs ``"yes"``) into a match. With ten identical answers one match
means all ten, so a correct answer scores exactly 1.0 and a wrong one 0.0.

Worked example: answers ``["2"]*6 + ["3"]*4``, prediction ``"two"``: each ``"2"``
sees 5 other ``"2"`` -> 1; each ``"3"`` sees 6 -> 1; accuracy 1.0. Prediction ``"3"``:
each ``"2"`` sees 4 -> 1; each ``"3"`` sees 3 -> 1; accuracy 1.0. Answers ``["2"]*9 +
["3"]``, prediction ``"3"``: nine answers see 1 match -> 1/3 each; the ``"3"`` itself
sees 0 -> 0; accuracy 9/30 = 0.3.

Example:
    >>> vqa_accuracy("Two.", ["2"] * 10)
    1.0
    >>> normalize_answer("The dog's ball, isnt it?")
    "dog's ball isn't it"
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from knoblab.errors import ConfigError

_PUNCT = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}

# The contractions the VQA evaluation restores; the keys (the same words with some or all
# apostrophes missing) are derived below rather than listed, which covers every spelling
# the official table lists.
_CONTRACTED = """ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't
hadn't've hasn't haven't he'd he'd've he's how'd how'll how's i'd i'd've i'm i've isn't it'd
it'd've it'll let's ma'am mightn't mightn't've might've mustn't must've needn't not've o'clock
oughtn't 'ow's'at shan't she'd've she's should've shouldn't shouldn't've somebody'd
somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's something'd
something'd've something'll that's there'd there'd've there're there's they'd they'd've
they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've
when's where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't
would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've""".split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for word in _CONTRACTED:
        parts = word.split("'")
        n = len(parts) - 1
        for mask in range(2**n - 1):  # every way of dropping at least one apostrophe
            out = parts[0]
            for i, part in enumerate(parts[1:]):
                out += ("'" if mask >> i & 1 else "") + part
            table.setdefault(out, word)
    # "i'd" without its apostrophe is the word "id"; the official table's key is "Id",
    # which never matches after lower-casing, so "id" stays as it is.
    table.pop("id", None)
    return table


CONTRACTIONS: dict[str, str] = _contraction_table()


def _process_punctuation(text: str) -> str:
    out = text
    glued_digits = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or glued_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _process_digit_article(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """The VQA evaluation's normalisation of an answer string."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy of ``pred`` against the ground-truth ``answers`` (normally 10).

    A single answer scores 1.0 on a match (there are no "other" answers to count, so
    the leave-one-out rule would always give 0; this is what VQA-style single-answer
    datasets mean).
    """
    if not answers:
        raise ConfigError("answers", list(answers), "a non-empty list of reference answers")
    p = normalize_answer(pred)
    gts = [normalize_answer(a) for a in answers]
    if len(gts) == 1:
        return float(p == gts[0])
    total = 0.0
    for i in range(len(gts)):
        matches = sum(1 for j, g in enumerate(gts) if j != i and g == p)
        total += min(1.0, matches / 3.0)
    return total / len(gts)


def exact_match(pred: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised answer, else 0.0."""
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(a) for a in answers))


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings.

    Hand-written (a row-by-row dynamic programme vectorised with numpy) because the
    stack has no edit-distance package; OCR answers are at most a few thousand characters.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    prev = np.arange(len(b) + 1, dtype=np.int64)
    for i, ch in enumerate(a, start=1):
        cost = (bb != ord(ch)).astype(np.int64)
        # substitutions and deletions are vectorised; insertions need a running minimum.
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[:-1] + cost, prev[1:] + 1)
        # insertion: cur[j] = min(cur[j], cur[j-1] + 1) == min over k<=j of (cur[k] + j - k)
        idx = np.arange(len(cur))
        cur = np.minimum.accumulate(cur - idx) + idx
        prev = cur
    return int(prev[-1])


def normalized_edit_distance(pred: str, ref: str) -> float:
    """``levenshtein(pred, ref) / max(len(pred), len(ref))``; 0.0 when both are empty.

    In [0, 1]; lower is better (OmniDocBench's text metric).
    """
    n = max(len(pred), len(ref))
    return 0.0 if n == 0 else levenshtein(pred, ref) / n


METRICS = ("vqa", "exact_match", "edit_distance")


def score(metric: str, pred: str, answers: Sequence[str]) -> float:
    """The per-sample score of ``pred`` under ``metric``; in [0, 1], higher is better."""
    if metric == "vqa":
        return vqa_accuracy(pred, answers)
    if metric == "exact_match":
        return exact_match(pred, answers)
    if metric == "edit_distance":
        if not answers:
            raise ConfigError("answers", list(answers), "a non-empty list of reference answers")
        return 1.0 - min(normalized_edit_distance(pred, a) for a in answers)
    raise ConfigError("metric", metric, f"one of {', '.join(METRICS)}")
