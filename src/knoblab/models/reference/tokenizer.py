"""A word-level tokenizer whose vocabulary ships inside the package (``vocab.json``).

Text is lower-cased and split into words and single punctuation marks; words outside
the vocabulary become ``<unk>``. Special tokens: ``<pad>`` (0), ``<unk>``, ``<bos>``,
``<eos>`` and ``<sep>`` (ends the question; the answer follows).

NOTE: the vocabulary is part of the weights: changing ``vocab.json`` invalidates the
shipped safetensors. Add words only at the end, and retrain.

Example:
    >>> tok = WordTokenizer.load()
    >>> tok.decode(tok.encode("How many circles?"))
    'how many circles ?'
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


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

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return [self.index.get(w, self.unk_id) for w in self.split(text)]

    def decode(self, ids: list[int]) -> str:
        """The words of ``ids``, special tokens left out, joined by spaces."""
        return " ".join(
            self.tokens[i] for i in ids if i not in self.special_ids and 0 <= i < len(self.tokens)
        )
