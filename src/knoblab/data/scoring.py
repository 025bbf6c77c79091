"""Answer scoring, faithful to each metric's official definition.

``score(metric, pred, answers)`` is what the sweep runner calls per sample; every metric
returns a number in [0, 1] where **higher is better**, the best over the ground truths
where the official metric takes one:

============================  ==================================================================
``vqa``                       VQA v2 accuracy, the official ``vqaEval.py`` (see ``vqa_accuracy``)
``vqa_lenient``               the same formula, both sides fully normalised (user datasets)
``exact_match``               stripped, case-sensitive string equality
``exact_match_normalized``    equality after the VQA normalisation of both sides
``anls``                      ANLS, Biten et al. 2019 (ST-VQA) / DocVQA, threshold 0.5
``relaxed_accuracy``          ChartQA (Masry et al. 2022): numbers within 5 %, exact otherwise
``edit_similarity``           1 - OmniDocBench's page-level normalised edit distance
============================  ==================================================================

``edit_distance`` is accepted as the old name of ``edit_similarity`` (configs written
before the rename keep working); it was, and is, a similarity (1 - distance).

Every metric obeys one rule on top of its definition: an empty or whitespace-only
prediction scores 0 unless a ground truth is empty (or whitespace-only) too. Only the
degenerate cases where a processed ground truth collapses to ``""`` (``"."`` in ``vqa``,
``"!!!"`` in ``edit_similarity``) are affected.

Edit distances are computed by ``rapidfuzz`` (C++; unit-cost Levenshtein).

Example:
    >>> score("vqa", "Two.", ["2"] * 10)
    1.0
    >>> score("vqa", "1", ["one"] * 3 + ["1"] + ["2"] * 6)  # the official 0.3
    0.3
    >>> score("anls", "Hello", ["hello"]), score("anls", "abcd", ["abxy"])
    (1.0, 0.0)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rapidfuzz.distance import Levenshtein

from knoblab.errors import ConfigError

# -- VQA v2 normalisation (vqaEval.py, GT-Vision-Lab/VQA, PythonEvaluationTools) -------------
# https://github.com/GT-Vision-Lab/VQA/blob/master/PythonEvaluationTools/vqaEvaluation/vqaEval.py
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
          "@", "`", ",", "?", "!")  # fmt: skip
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its "(?!<=\d)" is a look-AHEAD for the
# text "<=" + digit (a typo for a look-behind), which never matches at a ".", so the
# pattern removes every period not followed by a digit. It is called as
# ``sub("", text, re.UNICODE)``, which passes re.UNICODE (32) as ``count``: at most 32
# periods go. Both quirks are kept.
_PERIOD_STRIP = re.compile(r"\.(?!\d)")
_PERIOD_STRIP_COUNT = 32
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})

# The official contraction table, entry for entry (straight apostrophes, as since the
# script's 2016 "apostrophe symbol" fix). Its oddities are kept on purpose: the keys
# "Im", "Ive", "Id've", "I'dve" are capitalised and never match (words are lower-cased
# first), "let's" and "she's" map to themselves (so "lets", "shes" stay as they are),
# and "somebody'd" maps to "somebodyd" (the reverse of every other entry).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip


def process_punctuation(text: str) -> str:
    """``vqaEval.processPunctuation``: drop or space out punctuation, strip periods.

    A punctuation mark is removed when it touches a space somewhere in the text (or the
    text has a ``digit,digit``), else it becomes a space; periods not followed by a digit
    go (at most 32, as in the official call).
    """
    out = text
    glued_digits = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if p + " " in text or " " + p in text or glued_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """``vqaEval.processDigitArticle``: lower case, number words to digits, no articles,
    then the contraction table."""
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """The official normalisation of a *prediction*: whitespace, punctuation, digit/article.

    Example:
        >>> normalize_answer("The dog's ball, isnt it?")
        "dog's ball isn't it"
    """
    return process_digit_article(process_punctuation(_clean_whitespace(text)))


# -- the empty-prediction rule -----------------------------------------------------------------
def _check_answers(answers: Sequence[str]) -> None:
    if not answers:
        raise ConfigError("answers", list(answers), "a non-empty list of reference answers")


def _empty_prediction(pred: str, answers: Sequence[str]) -> bool:
    """True when ``pred`` is blank and no ground truth is: the score is then 0."""
    return not pred.strip() and all(a.strip() for a in answers)


def _leave_one_out(pred: str, gts: Sequence[str]) -> float:
    """Mean over each answer left out of ``min(1, matches among the others / 3)``."""
    if len(gts) == 1:
        return float(gts[0] == pred)
    hits = sum(g == pred for g in gts)
    # Leaving out a matching answer leaves hits - 1 matches, any other leaves hits.
    total = sum(min(1.0, (hits - (g == pred)) / 3.0) for g in gts)
    return total / len(gts)


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """VQA v2 accuracy, as the official evaluation computes it.

    Source: ``vqaEval.py`` of the VQA v2 release (GT-Vision-Lab/VQA,
    ``PythonEvaluationTools/vqaEvaluation``), the evaluation used by the VQA challenge and
    by lmms-eval. The prediction gets whitespace cleaning, ``process_punctuation`` and
    ``process_digit_article``; the ground truths get ``process_punctuation`` only, and
    only when they are not all the same. Accuracy is the mean, over leaving each
    ground truth out, of ``min(1, number of the others equal to the prediction / 3)``.

    NOTE: VQA v2 ground truths are stored already normalised (lower case, digits, no
    articles), so the official rule compares them as they are: ``"2"`` against ten
    ``"two"`` scores 0, and a prediction ``"A"`` (normalised to ``""``) never matches.
    For ground truths that are not normalised, use ``vqa_accuracy_lenient``. The script's
    2021 commit "Fixed processing answers bug" normalises both sides only when the
    answers differ; the challenge numbers and lmms-eval use the rule above.

    A single answer scores 1 on a match (the leave-one-out rule would give 0 always).

    Example:
        >>> vqa_accuracy("3", ["2"] * 9 + ["3"])  # nine answers see one match, one sees none
        0.3
    """
    _check_answers(answers)
    if _empty_prediction(pred, answers):
        return 0.0
    p = normalize_answer(pred)
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(g) for g in gts]
    return _leave_one_out(p, gts)


def _lenient(text: str) -> str:
    # An answer the normalisation empties ("a", "the") is compared as written, lower-cased,
    # so that "" never equals a non-empty answer.
    return normalize_answer(text) or text.strip().lower()


def vqa_accuracy_lenient(pred: str, answers: Sequence[str]) -> float:
    """VQA v2's accuracy formula with the prediction's full normalisation on every answer.

    Not an official metric: for user datasets whose answers are not stored normalised
    (``"Two"``, ``"the dog"``). Same leave-one-out formula as ``vqa_accuracy``; a text the
    normalisation empties is compared as written (lower-cased).

    Example:
        >>> vqa_accuracy_lenient("2", ["Two."] * 10)
        1.0
    """
    _check_answers(answers)
    if _empty_prediction(pred, answers):
        return 0.0
    return _leave_one_out(_lenient(pred), [_lenient(a) for a in answers])


def exact_match(pred: str, answers: Sequence[str]) -> float:
    """1.0 when the stripped prediction equals a stripped answer, case-sensitively.

    Source: the usual strict exact match (e.g. SQuAD's EM without its normalisation);
    right for OCR, codes and identifiers, where ``A-1`` is not ``1``.
    """
    _check_answers(answers)
    p = pred.strip()
    return float(any(p == a.strip() for a in answers))


def exact_match_normalized(pred: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals an answer after the VQA normalisation of both.

    Source: ``vqaEval.py``'s ``processPunctuation`` + ``processDigitArticle`` applied to
    both sides (not an official metric by itself). A text the normalisation empties is
    compared as written, lower-cased.
    """
    _check_answers(answers)
    if _empty_prediction(pred, answers):
        return 0.0
    p = _lenient(pred)
    return float(any(p == _lenient(a) for a in answers))


# -- edit distances -----------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    """Unit-cost edit distance (insertions, deletions, substitutions), by rapidfuzz."""
    return int(Levenshtein.distance(a, b))


def normalized_edit_distance(pred: str, ref: str) -> float:
    """``levenshtein(pred, ref) / max(len(pred), len(ref))``; 0.0 when both are empty.

    In [0, 1], lower is better; no text normalisation (see ``page_edit_distance``).
    """
    n = max(len(pred), len(ref))
    return 0.0 if n == 0 else levenshtein(pred, ref) / n


def anls(pred: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of one prediction (its per-question term).

    Source: Biten et al. 2019, "Scene Text Visual Question Answering" (ST-VQA, ICCV),
    eq. 1, also DocVQA's metric: both strings stripped and lower-cased, ``NL`` = edit
    distance / length of the longer, score ``1 - NL`` when ``NL < threshold`` else 0, the
    best over the ground truths. The dataset's ANLS is the mean of these scores.

    NOTE: at ``NL == 0.5`` the paper's rule gives 0 (``NL < tau``); the RRC evaluation
    script keeps 0.5 (it zeroes scores ``< 0.5``). The paper's rule is used here.

    Example:
        >>> anls("kitten", ["sitting"])  # NL = 3/7
        0.5714285714285714
    """
    _check_answers(answers)
    if _empty_prediction(pred, answers):
        return 0.0
    p = pred.strip().lower()
    best = 0.0
    for a in answers:
        nl = normalized_edit_distance(p, a.strip().lower())
        if nl < threshold:
            best = max(best, 1.0 - nl)
    return best


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_accuracy(pred: str, answers: Sequence[str], tolerance: float = 0.05) -> float:
    """ChartQA's relaxed accuracy: a number within 5 % of the answer, exact otherwise.

    Source: Masry et al. 2022, "ChartQA" (ACL Findings), section 5.1 (after Methani et al.
    2020), as implemented by pix2struct's ``relaxed_correctness`` and lmms-eval's ChartQA
    task: both sides parse as floats (``"12%"`` is 0.12) and the answer is non-zero ->
    ``|pred - answer| / |answer| <= 0.05``; otherwise case-insensitive string equality.
    The best over the answers. Both sides are stripped first (generated text often ends
    in a newline; ``float`` ignores the whitespace anyway).

    NOTE: as in the reference code, an answer of ``0`` is matched as a string, so
    ``"0.0"`` does not match ``"0"``.

    Example:
        >>> relaxed_accuracy("10.4", ["10"]), relaxed_accuracy("10.6", ["10"])
        (1.0, 0.0)
    """
    _check_answers(answers)
    if _empty_prediction(pred, answers):
        return 0.0
    p = pred.strip()
    pf = _to_float(p)
    for a in answers:
        t = a.strip()
        tf = _to_float(t)
        if pf is not None and tf:  # tf == 0 (and None) falls through to the string test
            if abs(pf - tf) / abs(tf) <= tolerance:
                return 1.0
        elif p.lower() == t.lower():
            return 1.0
    return 0.0


_OMNI_ESCAPES = ("\\t", "\\n", "\t", "\n", "/t", "/n")
_OMNI_DROP = re.compile(r"[^\w\u4e00-\u9fff]")


def omnidocbench_normalize(text: str) -> str:
    """OmniDocBench's text normalisation (``clean_string``): keep word characters and CJK.

    Removes the literal escapes ``\\t``, ``\\n``, ``/t``, ``/n``, tabs and newlines, then
    every character that is not a letter, digit, underscore or CJK ideograph (spaces and
    punctuation go). Case is kept. OmniDocBench first folds inline LaTeX to unicode
    (``textblock2unicode``, via pylatexenc); that step is not done here.
    """
    for esc in _OMNI_ESCAPES:
        text = text.replace(esc, "")
    return _OMNI_DROP.sub("", text)


def page_edit_distance(pred: str, ref: str) -> float:
    """OmniDocBench's normalised edit distance of a page's text; lower is better.

    Source: OmniDocBench (Ouyang et al., CVPR 2025), ``metrics/cal_metric.py``
    ``call_Edit_dist``: both texts pass ``omnidocbench_normalize``; a page scores the sum
    of its blocks' edit distances over the sum of ``max(len(pred), len(gt))``, which for
    a page compared as one text is ``levenshtein / max(len)``. 0.0 when both are empty
    (OmniDocBench skips such pages).

    Example:
        >>> page_edit_distance("Hello, world!", "hello world")  # "Helloworld" vs "helloworld"
        0.1
    """
    return normalized_edit_distance(omnidocbench_normalize(pred), omnidocbench_normalize(ref))


def edit_similarity(pred: str, answers: Sequence[str]) -> float:
    """``1 - page_edit_distance``, the best over the answers (higher is better).

    OmniDocBench reports the distance itself (its ``Edit_dist``); knoblab scores are
    similarities so that they sort like an accuracy.
    """
    _check_answers(answers)
    if _empty_prediction(pred, answers):
        return 0.0
    return 1.0 - min(page_edit_distance(pred, a) for a in answers)


# -- dispatch -----------------------------------------------------------------------------------
SCORERS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "vqa": vqa_accuracy,
    "vqa_lenient": vqa_accuracy_lenient,
    "exact_match": exact_match,
    "exact_match_normalized": exact_match_normalized,
    "anls": anls,
    "relaxed_accuracy": relaxed_accuracy,
    "edit_similarity": edit_similarity,
}
ALIASES: dict[str, str] = {"edit_distance": "edit_similarity"}
METRICS: tuple[str, ...] = tuple(SCORERS)
"""The metric names ``dataset.metric`` accepts (besides the aliases in ``ALIASES``)."""


def resolve_metric(metric: str, key: str = "metric") -> str:
    """The canonical name of ``metric``; ``ConfigError`` naming ``key`` when unknown."""
    name = ALIASES.get(metric, metric)
    if name not in SCORERS:
        raise ConfigError(key, metric, f"one of {', '.join(METRICS)}")
    return name


def score(metric: str, pred: str, answers: Sequence[str]) -> float:
    """The per-sample score of ``pred`` under ``metric``; in [0, 1], higher is better."""
    return SCORERS[resolve_metric(metric)](pred, answers)
