"""A word-level tokenizer whose vocabulary ships inside the package (``vocab.json``).

Text is lower-cased and split into words and single punctuation marks. A word outside
the vocabulary is spelled character by character when every character has a token, as
BERT's WordPiece does (https://huggingface.co/learn/llm-course/chapter6/6): the first
character as itself, the others as ``##``-prefixed continuation tokens (``"4071"`` ->
``4 ##0 ##7 ##1``); ``decode`` glues a continuation token to the word before it. This is
how the reference model reads and writes the codes of shapes-vqa's "read the code"
questions; any other unknown word becomes ``<unk>``. Special tokens: ``<pad>`` (0), ``<unk>``, ``<bos>``,
``<eos>`` and ``<sep>`` (ends the question; the answer follows).

NOTE: the vocabulary is part of the weights: changing ``vocab.json`` invalidates the
shipped safetensors. Add words only at the end, and retrain: weights trained on the
first n tokens keep working with ``WordTokenizer.load().truncated(n)`` (the words added
later are ``<unk>`` to them).

Example:
    >>> tok = WordTokenizer.load()
    >>> tok.decode(tok.encode("How many circles?"))
    'how many circles ?'
    >>> [tok.tokens[i] for i in tok.encode("code 4071")], tok.decode(tok.encode("code 4071"))
    (['code', '4', '##0', '##7', '##1'], 'code 4071')
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
#: WordPiece's continuing-subword prefix (HF tokenizers' ``continuing_subword_prefix``).
CONTINUATION = "##"


class WordTokenizer:
    """Maps words to ids and back."""

    def __init__(self, tokens: list[str]):
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id = self.index["<pad>"]
        self.unk_id = self.index["<unk>"]
        self.bos_id = self.index["<bos>"]
        self.eos_id = self.index["<eos>"]
        self.sep_id = self.index["<sep>"]
        self.special_ids = {self.pad_id, self.unk_id, self.bos_id, self.eos_id, self.sep_id}

    @classmethod
    def load(cls, path: str | Path | None = None) -> WordTokenizer:
        """The shipped vocabulary, or the ``vocab.json`` at ``path``."""
        if path is None:
            text = resources.files("knoblab.models.reference").joinpath("vocab.json").read_text()
        else:
            text = Path(path).read_text()
        return cls(json.loads(text)["tokens"])

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """Lower-cased words and punctuation marks of ``text``."""
        return _WORD.findall(text.lower())

    def truncated(self, n: int) -> WordTokenizer:
        """The tokenizer of the first ``n`` tokens (weights trained before words were added)."""
        return WordTokenizer(self.tokens[:n])

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return [i for w in self.split(text) for i in self._word_ids(w)]

    def _word_ids(self, word: str) -> list[int]:
        if word in self.index:
            return [self.index[word]]
        pieces = [word[0], *(CONTINUATION + c for c in word[1:])]
        if all(p in self.index for p in pieces):
            return [self.index[p] for p in pieces]
        return [self.unk_id]

    def decode(self, ids: list[int]) -> str:
        """The words of ``ids``, special tokens left out, joined by spaces (``##`` pieces glued)."""
        out: list[str] = []
        for i in ids:
            if i in self.special_ids or not 0 <= i < len(self.tokens):
                continue
            t = self.tokens[i]
            if t.startswith(CONTINUATION) and len(t) > len(CONTINUATION):
                t = t[len(CONTINUATION) :]
                if out:
                    out[-1] += t
                    continue
            out.append(t)
        return " ".join(out)
