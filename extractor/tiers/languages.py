"""Which of the corpus's languages a model's tokenizer can be gated on.

English always; another language where the tokenizer encodes it about as well: at most
`MAX_UNKNOWN_SHARE` of its pieces unknown and at most `MAX_FERTILITY_RATIO` times
English's pieces per whitespace word. The corpus's English-only MiniLM WordPiece spends
1.6x (French, Spanish) to 4.8x (Russian); XLM-R's unigram 1.05x to 1.32x. Ours because a
tokenizer knows its vocabulary, not which languages it was built for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENGLISH = "en"
MAX_UNKNOWN_SHARE = 0.01
# Between the two measured sides (1.32x, 1.60x): a tokenizer that cuts a language's
# words into half again as many pieces as English's was not built for that language.
MAX_FERTILITY_RATIO = 1.5


@dataclass(frozen=True)
class Coverage:
    """How a tokenizer encodes one language's sentences, beside English."""

    language: str
    unknown_share: float  # of the language's pieces, those that are the unknown token
    fertility: float  # pieces per whitespace word
    english_fertility: float

    @property
    def ratio(self) -> float:
        return self.fertility / self.english_fertility

    @property
    def problem(self) -> str | None:
        """Why the gate leaves the language out, or None where it is used."""
        if self.language == ENGLISH:
            return None
        if self.unknown_share > MAX_UNKNOWN_SHARE:
            return (f"{self.unknown_share:.1%} of its pieces unknown "
                    f"(at most {MAX_UNKNOWN_SHARE:.0%})")
        if self.ratio > MAX_FERTILITY_RATIO:
            return (f"{self.ratio:.2f}x English's pieces per word "
                    f"(at most {MAX_FERTILITY_RATIO}x)")
        return None

    def __str__(self) -> str:
        return (f"{self.language}: {self.unknown_share:.1%} unknown, {self.fertility:.2f} "
                f"pieces per word, {self.ratio:.2f}x English's {self.english_fertility:.2f}")


def coverage(tokenizer: Any, texts: dict[str, list[str]]) -> dict[str, Coverage]:
    """Each language's figures under a transformers tokenizer, in `texts`' order.

    Args:
        texts: sentences per language; English's (`ENGLISH`) are the measure.
    """
    def figures(sentences: list[str]) -> tuple[float, float]:
        ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
        pieces = sum(map(len, ids))
        unknown = tokenizer.unk_token_id  # None for byte-level BPE: nothing is unknown
        unknowns = 0 if unknown is None else sum(row.count(unknown) for row in ids)
        # Whitespace words fit the shipped languages; a script written without spaces
        # (Chinese, Japanese, Thai) would need characters as its unit instead.
        return unknowns / pieces, pieces / sum(len(s.split()) for s in sentences)

    english = figures(texts[ENGLISH])[1]
    return {language: Coverage(language, *figures(sentences), english)
            for language, sentences in texts.items()}


def usable(tokenizer: Any, texts: dict[str, list[str]]) -> tuple[str, ...]:
    """English, and each other language of `texts` the tokenizer encodes about as well."""
    return tuple(language for language, c in coverage(tokenizer, texts).items()
                 if c.problem is None)
