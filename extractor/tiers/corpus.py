"""Real text for the lower-precision gates: select on one part, judge on another.

`corpus.txt` (shipped with the package) is split by position into a selection part,
the only text the node-keeping search and static calibration ever see, and a judging
part, run in the batch compositions users run: each sentence alone, padded batches of
mixed lengths, and the longest sentences together. A gate judged on its tuning text
is no gate (FIELD_NOTES: 0.9952 on its own 12 sentences, 0.9932 on 24 others).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .accuracy import Agreement, cosines, summarise

SELECTION_SIZE = 48
JUDGING_SIZE = 96
PADDED_BATCH = 8  # judging: batches of 8 sentences, short and long mixed
LONGEST = 8  # judging: the longest sentences, padded together
Forward = Callable[[dict[str, np.ndarray]], np.ndarray]  # inputs -> last_hidden_state


def corpus_sentences() -> list[str]:
    """The shipped sentences, in file order."""
    text = resources.files("extractor.tiers").joinpath("corpus.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def split_corpus(sentences: list[str]) -> tuple[list[str], list[str]]:
    """(selection, judging): by length, every third sentence to selection, two to judging,
    then thinned evenly to SELECTION_SIZE and JUDGING_SIZE, so both parts span short
    to long. Deterministic: it depends on the file only."""
    ranked = sorted(sentences, key=len)  # stable: ties keep file order
    selection = ranked[0::3]
    judging = [s for i, s in enumerate(ranked) if i % 3]
    return _thin(selection, SELECTION_SIZE), _thin(judging, JUDGING_SIZE)


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
        return {"ok": self.ok, **{k: a.to_dict() for k, a in self.compositions.items()}}


def real_text(tokenizer_dir: str | Path, input_names: list[str], forward: Forward) -> RealText:
    """The corpus tokenised with the model's tokenizer, each batch run once in fp32."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)

    def batch(sentences: list[str]) -> Batch:
        encoded = tokenizer(sentences, padding=True, truncation=True, return_tensors="np")
        zeros = np.zeros(encoded["input_ids"].shape, dtype=np.int64)
        inputs = {name: encoded.get(name, zeros).astype(np.int64) for name in input_names}
        return Batch(inputs, forward(inputs))

    selection, judging = split_corpus(corpus_sentences())
    # Short and long in every padded batch: sentence i goes with i + n/8, i + 2n/8, ...
    rows = len(judging) // PADDED_BATCH
    padded = [batch([judging[i + k * rows] for k in range(PADDED_BATCH)]) for i in range(rows)]
    longest = sorted(judging, key=len)[-LONGEST:]
    return RealText(batch(selection), {
        # fp32 PyTorch's rows do not depend on their batch-mates (parity holds on real
        # tokens), so each sentence alone is judged against its padded batch's row.
        "single": [_row(b, k) for k in range(PADDED_BATCH) for b in padded],
        "padded": padded,
        "longest": [batch(longest)],
    })


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
    })
