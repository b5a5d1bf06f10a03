from __future__ import annotations

import numpy as np
from transformers import AutoTokenizer

from extractor.tiers.accuracy import Agreement
from extractor.tiers.corpus import (
    JUDGING_SIZE,
    LONGEST,
    PADDED_BATCH,
    SELECTION_SIZE,
    Judgement,
    corpus_sentences,
    judge,
    real_text,
    split_corpus,
)


def test_corpus_ships_a_few_hundred_distinct_sentences():
    sentences = corpus_sentences()
    assert len(sentences) >= 200, f"expected a few hundred sentences, saw {len(sentences)}"
    assert len(set(sentences)) == len(sentences), "expected no sentence twice"


def test_corpus_sentences_are_5_to_120_tokens_long(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)
    lengths = [len(ids) for ids in tokenizer(corpus_sentences())["input_ids"]]
    assert min(lengths) >= 5 and max(lengths) <= 120, (min(lengths), max(lengths))
    assert max(lengths) >= 40, f"expected long multi-clause sentences, longest {max(lengths)}"


def test_split_is_deterministic_disjoint_and_spans_short_to_long():
    sentences = corpus_sentences()
    selection, judging = split_corpus(sentences)
    assert (selection, judging) == split_corpus(list(reversed(sentences))[::-1])
    assert (len(selection), len(judging)) == (SELECTION_SIZE, JUDGING_SIZE)
    assert not set(selection) & set(judging), "the search must never see a judged sentence"
    by_length = sorted(sentences, key=len)
    for part in (selection, judging):  # both parts reach the shortest and longest tenth
        assert min(map(len, part)) <= len(by_length[len(by_length) // 10])
        assert max(map(len, part)) >= len(by_length[-len(by_length) // 10])


def test_judging_runs_each_sentence_alone_in_padded_batches_and_the_longest_together(
    minilm_dir,
):
    names = ["input_ids", "attention_mask", "token_type_ids"]
    seen = []

    def forward(inputs):  # a stand-in for PyTorch: embeddings that are the token ids
        seen.append(inputs["input_ids"].shape)
        return np.repeat(inputs["input_ids"][..., None].astype(np.float32) + 1, 4, axis=-1)

    text = real_text(minilm_dir, names, forward)
    assert text.inputs["input_ids"].shape[0] == SELECTION_SIZE
    single, padded, longest = (text.judging[k] for k in ("single", "padded", "longest"))
    assert len(single) == JUDGING_SIZE and all(b.inputs["input_ids"].shape[0] == 1 for b in single)
    assert all(b.inputs["attention_mask"].all() for b in single), "alone means no padding"
    assert [b.inputs["input_ids"].shape[0] for b in padded] == [PADDED_BATCH] * len(padded)
    assert all(not b.inputs["attention_mask"].all() for b in padded), "mixed lengths pad"
    assert longest[0].inputs["input_ids"].shape[0] == LONGEST
    # PyTorch runs the selection, each padded batch and the longest batch: nothing else.
    assert len(seen) == 1 + len(padded) + 1
    judged = judge("same", forward, text)
    assert judged.ok and set(judged.compositions) == {"single", "padded", "longest"}
    assert all(a.token_cosine_mean > 0.999999 for a in judged.compositions.values())


def test_judgement_fails_when_any_composition_misses_the_gate():
    good = Agreement("f", 0.999, 0.99, 0.999, 0.99, 8)
    bad = Agreement("f", 0.999, 0.99, 0.994, 0.99, 8)
    assert Judgement({"single": good, "padded": good}).ok
    assert not Judgement({"single": good, "padded": bad}).ok
    assert Judgement({"single": good}).to_dict()["single"]["ok"] is True


def test_clears_raises_the_gate_by_the_margin():
    passing = Agreement("f", 0.9905, 0.98, 0.9953, 0.99, 8)
    assert passing.ok and passing.clears((0.0, 0.0))
    assert not passing.clears((0.001, 0.0005)), "0.9953 is under 0.995 + 0.0005"
