from __future__ import annotations

import pytest
import torch
from builders.tiny_encoders import tiny_config

from extractor.errors import PrefixError
from extractor.resolve.encoders import ENCODER_TYPES, find_encoders, meta_state_dict, signatures
from extractor.resolve.prefixes import (
    choose_prefix,
    encoder_match,
    encoder_prefixes,
    prefix_summary,
)

BERT_LAYOUT = ("bert", "roberta", "xlm-roberta", "camembert", "ernie", "data2vec-text")


def _encoder(model_type: str, prefix: str, **values) -> dict[str, torch.Tensor]:
    state = meta_state_dict(tiny_config(model_type, **values))
    return {prefix + k: v for k, v in state.items()}


@pytest.mark.parametrize("model_type", ENCODER_TYPES)
def test_every_supported_type_is_recognised_at_a_deep_prefix(model_type):
    prefix = "token_rep_layer.bert_layer.model."  # GLiNER's depth
    state = {
        **_encoder(model_type, prefix),
        "token_rep_layer.projection.weight": torch.zeros(8, 8),
        "span_rep_layer.out_project.0.weight": torch.zeros(8, 8),
    }
    [match] = find_encoders(state)
    assert match.prefix == prefix
    assert model_type in match.model_types


def test_types_that_share_parameter_names_are_one_layout_and_say_so():
    match = encoder_match(_encoder("roberta", "roberta."), "roberta.")
    assert match.model_types[: len(BERT_LAYOUT)] == BERT_LAYOUT
    assert match.layout == "bert layout"
    # DeBERTa-v3 (relative attention, no absolute positions) is its own type.
    v3 = _encoder("deberta-v2", "enc.")
    assert encoder_match(v3, "enc.").model_types == ("deberta-v2",)
    assert encoder_match(_encoder("mpnet", "0."), "0.").model_types == ("mpnet",)


def test_a_pooler_left_out_and_transformers_4_buffers_still_match():
    state = {k: v for k, v in _encoder("bert", "bert.").items() if ".pooler." not in k}
    state["bert.embeddings.position_ids"] = torch.arange(8)[None]
    assert encoder_prefixes(state) == ["bert."]


def test_a_subtree_with_a_layer_missing_its_attention_is_no_encoder():
    state = {k: v for k, v in _encoder("bert", "bert.").items() if "attention.self.query" not in k}
    assert encoder_prefixes(state) == []


def test_the_whole_state_dict_can_be_the_encoder():
    assert encoder_prefixes(_encoder("electra", "")) == [""]


def test_single_encoder_is_chosen_and_nested_prefixes_work():
    state = {**_encoder("bert", "module.bert."), "module.classifier.weight": torch.zeros(2, 32)}
    assert choose_prefix(state, None) == "module.bert."
    assert choose_prefix(state, "module.bert") == "module.bert."  # trailing dot is optional
    lightning = _encoder("bert", "model.encoder.")
    assert choose_prefix(lightning, None) == "model.encoder."


def test_two_encoders_need_an_explicit_prefix():
    state = {**_encoder("bert", "bert."), **_encoder("deberta-v2", "extra_bert.")}
    with pytest.raises(PrefixError, match="several encoders found \\('bert.', 'extra_bert.'\\)"):
        choose_prefix(state, None)
    assert choose_prefix(state, "extra_bert.") == "extra_bert."


def test_unknown_prefix_names_the_closest_ones():
    state = {**_encoder("bert", "bert."), "entity_label_ffn.layers.0.weight": torch.zeros(1)}
    with pytest.raises(PrefixError, match="no tensors under prefix 'bret.'; closest: 'bert.'"):
        choose_prefix(state, "bret.")


def test_no_encoder_at_all():
    with pytest.raises(PrefixError, match="no transformer encoder"):
        choose_prefix({"fc.weight": torch.zeros(2, 2)}, None)


def test_summary_counts_tensors_and_marks_encoders_at_any_depth():
    state = {
        **_encoder("bert", "bert."),
        **_encoder("deberta-v2", "token_rep_layer.bert_layer.model."),
        "global_feature_weights": torch.zeros(13),
        "trigger_crf.transition": torch.zeros(11, 11),
    }
    rows = {row.prefix: row for row in prefix_summary(state)}
    assert rows["bert."].architecture == "bert layout"
    assert rows["bert."].model_types[:2] == ("bert", "roberta")
    assert rows["token_rep_layer.bert_layer.model."].architecture == "deberta-v2"
    assert rows["bert."].tensors == sum(k.startswith("bert.") for k in state)
    assert rows["trigger_crf."].parameters == 121
    assert rows["global_feature_weights"].tensors == 1
    assert {"bert.embeddings.", "bert.encoder.", "bert.pooler."} <= set(rows)
    assert rows["bert.embeddings."].architecture is None


def test_signatures_are_cached_on_disk_per_transformers_version(tmp_path, monkeypatch):
    from extractor.resolve import encoders

    monkeypatch.setenv("SUBGRAFT_CACHE", str(tmp_path))
    encoders._signatures.cache_clear()
    first = signatures()
    [cache] = tmp_path.glob("encoder-signatures-*.json")
    encoders._signatures.cache_clear()

    def rebuilt(model_type):
        raise AssertionError(f"{model_type} rebuilt instead of read from the cache")

    monkeypatch.setattr(encoders, "_compute_signature", rebuilt)
    assert signatures() == first
    assert "transformers" in cache.name
    encoders._signatures.cache_clear()


def test_a_wrong_prefix_suggests_the_encoder_first_never_a_part_of_it():
    state = {**_encoder("bert", "bert."), "entity_label_ffn.layers.0.weight": torch.zeros(1)}
    with pytest.raises(PrefixError) as caught:
        choose_prefix(state, "encoder.")
    message = str(caught.value)
    assert "closest: 'bert.'" in message, message
    assert "bert.encoder." not in message and "bert.pooler." not in message, message


def test_a_prefix_inside_an_encoder_names_the_whole_one():
    state = {**_encoder("bert", "bert."), "entity_label_ffn.layers.0.weight": torch.zeros(1)}
    for part in ("bert.encoder.", "bert.encoder.layer", "bert.pooler."):
        with pytest.raises(PrefixError, match="inside the encoder at 'bert.'.*use --prefix bert.$"):
            choose_prefix(state, part)
    whole = _encoder("electra", "")
    with pytest.raises(PrefixError, match="use no --prefix"):
        choose_prefix(whole, "encoder.")
    lightning = _encoder("bert", "model.encoder.")  # an encoder's own name may hold "encoder."
    assert choose_prefix(lightning, "model.encoder.") == "model.encoder."
