from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

from extractor.errors import ExtractorError
from extractor.tiers.accuracy import Agreement
from extractor.tiers.corpus import (
    JUDGING_SIZE,
    LANGUAGE_JUDGING_SIZE,
    LANGUAGE_SELECTION_SIZE,
    LANGUAGES,
    LONGEST,
    PADDED_BATCH,
    SELECTION_SIZE,
    Judgement,
    corpus_sentences,
    judge,
    real_text,
    split_corpus,
    split_languages,
)
from extractor.tiers.languages import ENGLISH, MAX_FERTILITY_RATIO, coverage, usable

OTHERS = [language for language in LANGUAGES if language != ENGLISH]
NAMES = ["input_ids", "attention_mask", "token_type_ids"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _wordpiece(directory: Path, languages: list[str], vocab_size: int) -> Path:
    """A cased WordPiece trained on the shipped sentences of `languages`, saved as
    AutoTokenizer loads it: a stand-in for a multilingual model's tokenizer."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        [s for language in languages for s in corpus_sentences(language)],
        trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  show_progress=False))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512,
        **{f"{name}_token": f"[{name.upper()}]" for name in ("pad", "unk", "cls", "sep",
                                                              "mask")}}))
    return directory


@pytest.fixture(scope="module")
def multilingual_dir(tmp_path_factory) -> Path:
    # 6000 pieces: enough for the corpus's five languages to keep most words whole, as
    # XLM-R's 250k do for a hundred; at 4000 Russian, the least seen, is cut 1.6x English.
    return _wordpiece(tmp_path_factory.mktemp("wordpiece") / "all", list(LANGUAGES), 6000)


def _texts() -> dict[str, list[str]]:
    return {language: corpus_sentences(language) for language in LANGUAGES}


def _figures(tokenizer) -> str:
    return "; ".join(f"{c} ({c.problem or 'used'})" for c in coverage(tokenizer, _texts()).values())


def _split_before_languages(sentences: list[str]) -> tuple[list[str], list[str]]:
    """split_corpus as it was while the corpus was English alone (commit 4e992f4)."""
    ranked = sorted(sentences, key=len)
    selection, judging = ranked[0::3], [s for i, s in enumerate(ranked) if i % 3]

    def thin(items: list[str], size: int) -> list[str]:
        if len(items) <= size:
            return items
        return [items[i] for i in np.linspace(0, len(items) - 1, size).round().astype(int)]

    return thin(selection, SELECTION_SIZE), thin(judging, JUDGING_SIZE)


def _stand_in(seen: list | None = None):
    def forward(inputs):  # a stand-in for PyTorch: embeddings that are the token ids
        if seen is not None:
            seen.append(inputs["input_ids"].shape)
        return np.repeat(inputs["input_ids"][..., None].astype(np.float32) + 1, 4, axis=-1)
    return forward


def test_corpus_ships_a_few_hundred_distinct_sentences():
    sentences = corpus_sentences()
    assert len(sentences) >= 200, f"expected a few hundred sentences, saw {len(sentences)}"
    assert len(set(sentences)) == len(sentences), "expected no sentence twice"
    for language in OTHERS:
        sentences = corpus_sentences(language)
        assert len(sentences) >= 36, f"{language}: expected 36 sentences, saw {len(sentences)}"
        assert len(set(sentences)) == len(sentences), f"{language}: a sentence twice"


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
    seen = []
    forward = _stand_in(seen)
    text = real_text(minilm_dir, NAMES, forward)
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


def test_english_minilm_tokenizer_gates_on_english_alone(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)
    assert usable(tokenizer, _texts()) == (ENGLISH,), (
        f"expected every other language left out, saw {_figures(tokenizer)}")
    for language, c in coverage(tokenizer, _texts()).items():  # shredded, not unknown
        assert language == ENGLISH or c.ratio > MAX_FERTILITY_RATIO, _figures(tokenizer)


def test_english_minilm_split_and_batches_are_those_of_the_english_corpus(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)
    selection, judging = _split_before_languages(corpus_sentences())
    assert split_languages((ENGLISH,)) == {ENGLISH: (selection, judging)}
    text = real_text(minilm_dir, NAMES, _stand_in())
    assert text.languages == (ENGLISH,)
    rows = JUDGING_SIZE // PADDED_BATCH
    expected = [selection, *([judging[i + k * rows] for k in range(PADDED_BATCH)]
                             for i in range(rows)), sorted(judging, key=len)[-LONGEST:]]
    batches = [text.selection, *text.judging["padded"], *text.judging["longest"]]
    assert len(batches) == len(expected)
    for sentences, b in zip(expected, batches, strict=True):
        encoded = tokenizer(sentences, padding=True, truncation=True, return_tensors="np")
        for name in NAMES:
            assert np.array_equal(b.inputs[name], encoded[name]), (name, sentences[0])


def test_trained_multilingual_tokenizer_gates_on_every_language(multilingual_dir):
    tokenizer = AutoTokenizer.from_pretrained(multilingual_dir, local_files_only=True)
    assert usable(tokenizer, _texts()) == LANGUAGES, (
        f"expected every language it was trained on, saw {_figures(tokenizer)}")


def test_a_tokenizer_that_never_saw_cyrillic_leaves_russian_out_for_its_unknowns(tmp_path):
    latin = _wordpiece(tmp_path / "latin", [ENGLISH, "fr", "de", "es"], 6000)
    tokenizer = AutoTokenizer.from_pretrained(latin, local_files_only=True)
    russian = coverage(tokenizer, _texts())["ru"]
    assert russian.problem and "unknown" in russian.problem, _figures(tokenizer)
    assert usable(tokenizer, _texts()) == (ENGLISH, "fr", "de", "es"), _figures(tokenizer)


def test_every_other_language_sentence_is_5_to_120_tokens_long(multilingual_dir):
    tokenizer = AutoTokenizer.from_pretrained(multilingual_dir, local_files_only=True)
    for language in OTHERS:
        lengths = [len(ids) for ids in tokenizer(corpus_sentences(language))["input_ids"]]
        assert min(lengths) >= 5 and max(lengths) <= 120, (language, min(lengths), max(lengths))
        assert max(lengths) >= 40, f"{language}: expected long multi-clause sentences"


def test_each_other_language_splits_like_english_spanning_short_to_long():
    parts = split_languages(LANGUAGES)
    assert list(parts) == list(LANGUAGES)
    for language in OTHERS:
        sentences = corpus_sentences(language)
        selection, judging = parts[language]
        assert (len(selection), len(judging)) == (LANGUAGE_SELECTION_SIZE, LANGUAGE_JUDGING_SIZE)
        assert not set(selection) & set(judging), f"{language}: a judged sentence selected"
        assert set(selection) | set(judging) <= set(sentences)
        by_length = sorted(sentences, key=len)
        for part in (selection, judging):
            assert min(map(len, part)) <= len(by_length[len(by_length) // 10]), language
            assert max(map(len, part)) >= len(by_length[-len(by_length) // 10]), language
    assert LANGUAGE_JUDGING_SIZE % PADDED_BATCH == 0, "padded batches must hold every sentence"


def test_real_text_carries_every_language_in_selection_and_each_composition(multilingual_dir):
    tokenizer = AutoTokenizer.from_pretrained(multilingual_dir, local_files_only=True)
    parts = split_languages(LANGUAGES)

    def ids(sentences: list[str]) -> set[tuple[int, ...]]:
        return {tuple(row) for row in tokenizer(sentences)["input_ids"]}

    def languages(batches, part: int) -> set[str]:
        rows = {tuple(row[mask.astype(bool)]) for b in batches for row, mask in
                zip(b.inputs["input_ids"], b.inputs["attention_mask"], strict=True)}
        return {language for language, split in parts.items() if rows & ids(split[part])}

    text = real_text(multilingual_dir, NAMES, _stand_in())
    assert text.languages == LANGUAGES
    others = len(OTHERS)
    assert text.inputs["input_ids"].shape[0] == SELECTION_SIZE + others * LANGUAGE_SELECTION_SIZE
    assert len(text.judging["single"]) == JUDGING_SIZE + others * LANGUAGE_JUDGING_SIZE
    assert len(text.judging["longest"]) == len(LANGUAGES), "each language's longest together"
    assert languages([text.selection], 0) == set(LANGUAGES)
    for composition, batches in text.judging.items():
        assert languages(batches, 1) == set(LANGUAGES), composition
    judged = judge("same", _stand_in(), text)
    assert judged.ok and judged.to_dict()["languages"] == list(LANGUAGES)


@pytest.mark.parametrize("broken", ['{"model": {"type": "WordPiece"', '{"version": "1.0"}'])
def test_a_tokenizer_that_cannot_load_is_one_line_naming_its_folder(tmp_path, broken):
    (tmp_path / "tokenizer.json").write_text(broken)
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ExtractorError) as caught:
        real_text(tmp_path, ["input_ids", "attention_mask"], lambda inputs: None)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: its tokenizer cannot be loaded") and "\n" not in message
