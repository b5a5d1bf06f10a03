"""Real text for the lower-precision gates: select on one part, judge on another.

`corpus.txt` (shipped with the package, English) is split by length into a selection
part, the only text the node-keeping search and static calibration ever see, and a
judging part, run in the batch compositions users run: each sentence alone, padded
batches of mixed lengths, and the longest sentences together. A gate judged on its
tuning text is no gate (FIELD_NOTES: 0.9952 on its own 12 sentences, 0.9932 on 24
others). Each other language the model's tokenizer encodes about as well as English
(`languages`; `corpus.<language>.txt`) is split alike and appended to both parts, so a
multilingual model is gated on every language it reads and an English one as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExtractorError
from ..resolve.config_sources import TokenizerLoadError, load_tokenizer
from .accuracy import Agreement, cosines, summarise
from .languages import ENGLISH, usable

SELECTION_SIZE = 48
JUDGING_SIZE = 96
PADDED_BATCH = 8  # judging: batches of 8 sentences, short and long mixed
LONGEST = 8  # judging: the longest sentences, padded together
# Each other language: a quarter of English's share, so English still weighs most in
# the search; its judging size is a multiple of PADDED_BATCH, so padded batches (and
# each sentence alone, cut from them) hold every judged sentence.
LANGUAGE_SELECTION_SIZE = 12
LANGUAGE_JUDGING_SIZE = 24
# One file a language, each with its own header; English's keeps its name and bytes.
LANGUAGES = (ENGLISH, "fr", "de", "es", "ru")
Forward = Callable[[dict[str, np.ndarray]], np.ndarray]  # inputs -> last_hidden_state


def corpus_sentences(language: str = ENGLISH) -> list[str]:
    """The shipped sentences of one language, in file order."""
    name = "corpus.txt" if language == ENGLISH else f"corpus.{language}.txt"
    text = resources.files("extractor.tiers").joinpath(name).read_text("utf-8")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def split_corpus(sentences: list[str], selection_size: int = SELECTION_SIZE,
                 judging_size: int = JUDGING_SIZE) -> tuple[list[str], list[str]]:
    """(selection, judging): by length, every third sentence to selection, two to judging,
    then thinned evenly to the sizes, so both parts span short to long. Deterministic:
    it depends on the file only."""
    ranked = sorted(sentences, key=len)  # stable: ties keep file order
    selection = ranked[0::3]
    judging = [s for i, s in enumerate(ranked) if i % 3]
    return _thin(selection, selection_size), _thin(judging, judging_size)


def split_languages(languages: tuple[str, ...]) -> dict[str, tuple[list[str], list[str]]]:
    """(selection, judging) per language: English's as `split_corpus` gives it, every
    other language's at LANGUAGE_SELECTION_SIZE and LANGUAGE_JUDGING_SIZE."""
    parts: dict[str, tuple[list[str], list[str]]] = {}
    for language in languages:
        sizes = ((SELECTION_SIZE, JUDGING_SIZE) if language == ENGLISH
                 else (LANGUAGE_SELECTION_SIZE, LANGUAGE_JUDGING_SIZE))
        parts[language] = split_corpus(corpus_sentences(language), *sizes)
    return parts


def _thin(items: list[str], size: int) -> list[str]:
    if len(items) <= size:
        return items
    picks = np.linspace(0, len(items) - 1, size).round().astype(int)
    return [items[i] for i in picks]


@dataclass(frozen=True)
class Batch:
    """Tokenised sentences and fp32 PyTorch's last_hidden_state on them."""

    inputs: dict[str, np.ndarray]
    expected: np.ndarray


@dataclass(frozen=True)
class RealText:
    """The selection part as one padded batch, and the judging part by composition."""

    selection: Batch
    judging: dict[str, list[Batch]]  # "single", "padded", "longest"
    languages: tuple[str, ...] = (ENGLISH,)  # in both parts, English first

    @property
    def inputs(self) -> dict[str, np.ndarray]:  # the selection batch: search, timing
        return self.selection.inputs

    @property
    def expected(self) -> np.ndarray:
        return self.selection.expected

    def calibration_samples(self) -> list[dict[str, np.ndarray]]:
        """Each selection sentence alone, cut to its own tokens (static int8 ranges)."""
        from .runtimes import calibration_samples

        return calibration_samples(self.selection.inputs)


@dataclass(frozen=True)
class Judgement:
    """A file's agreement with fp32 on the judging part, per batch composition."""

    compositions: dict[str, Agreement]
    languages: tuple[str, ...] = (ENGLISH,)  # of the judging part

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.compositions.values())

    @property
    def worst(self) -> Agreement:
        """One row for a table: each figure at its worst over the compositions, so it
        passes its tier's gate exactly when every composition does."""
        parts = list(self.compositions.values())
        first = parts[0]
        return Agreement(
            first.file,
            min(a.token_cosine_mean for a in parts),
            min(a.token_cosine_min for a in parts),
            min(a.sentence_cosine_mean for a in parts),
            min(a.sentence_cosine_min for a in parts),
            max(a.sentences for a in parts),
            max(a.max_abs for a in parts),
            first.tier,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "languages": list(self.languages),
                **{k: a.to_dict() for k, a in self.compositions.items()}}


def real_text(tokenizer_dir: str | Path, input_names: list[str], forward: Forward,
              source: str | Path | None = None) -> RealText:
    """The corpus in every language the model's tokenizer encodes about as well as
    English, tokenised with that tokenizer, each batch run once in fp32.

    Args:
        source: the folder the tokenizer files were copied from, named when they cannot
            be loaded (`tokenizer_dir` itself by default).
    """
    try:
        tokenizer = load_tokenizer(Path(tokenizer_dir))
    except TokenizerLoadError as exc:
        raise ExtractorError(f"{source or tokenizer_dir}: its tokenizer cannot be loaded for the "
                             f"accuracy gate's text ({exc})") from None

    def batch(sentences: list[str]) -> Batch:
        encoded = tokenizer(sentences, padding=True, truncation=True, return_tensors="np")
        zeros = np.zeros(encoded["input_ids"].shape, dtype=np.int64)
        inputs = {name: encoded.get(name, zeros).astype(np.int64) for name in input_names}
        return Batch(inputs, forward(inputs))

    languages = usable(tokenizer, {language: corpus_sentences(language)
                                   for language in LANGUAGES})
    parts = split_languages(languages)
    selection = [s for chosen, _ in parts.values() for s in chosen]
    judging = [s for _, judged in parts.values() for s in judged]
    # Short and long in every padded batch: sentence i goes with i + n/8, i + 2n/8, ...
    rows = len(judging) // PADDED_BATCH
    padded = [batch([judging[i + k * rows] for k in range(PADDED_BATCH)]) for i in range(rows)]
    return RealText(batch(selection), {
        # fp32 PyTorch's rows do not depend on their batch-mates (parity holds on real
        # tokens), so each sentence alone is judged against its padded batch's row.
        "single": [_row(b, k) for k in range(PADDED_BATCH) for b in padded],
        "padded": padded,
        # Each language's longest together: English's batch is the one it always was,
        # and no language's long sentences crowd out another's.
        "longest": [batch(sorted(judged, key=len)[-LONGEST:]) for _, judged in parts.values()],
    }, languages)


def _row(batch: Batch, row: int) -> Batch:
    """One sentence of a padded batch, alone and cut to its real tokens."""
    length = int(batch.inputs["attention_mask"][row].sum())
    return Batch({k: v[row : row + 1, :length] for k, v in batch.inputs.items()},
                 batch.expected[row : row + 1, :length])


def judge(name: str, run: Forward, text: RealText, tier: str = "int8") -> Judgement:
    """`run`'s agreement with fp32 on every judging composition."""
    return Judgement({
        composition: summarise(name, [cosines(run(b.inputs), b.expected,
                                              b.inputs["attention_mask"]) for b in batches],
                               tier)
        for composition, batches in text.judging.items()
    }, text.languages)
