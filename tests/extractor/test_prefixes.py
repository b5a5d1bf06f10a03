from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

from extractor.errors import PrefixError
from extractor.prefixes import choose_prefix, encoder_prefixes, guess_model_type, prefix_summary

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
)


def _encoder(model_type: str, prefix: str, **overrides) -> dict[str, torch.Tensor]:
    if model_type == "distilbert":
        config = AutoConfig.for_model(
            model_type,
            vocab_size=99,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=37,
            max_position_embeddings=64,
        )
    else:
        config = AutoConfig.for_model(model_type, **{**TINY, **overrides})
    with torch.device("meta"):
        state = AutoModel.from_config(config).state_dict()
    return {prefix + k: v for k, v in state.items()}


@pytest.mark.parametrize(
    "model_type, overrides, prefix, expected",
    [
        ("bert", {}, "bert.", "bert"),
        ("roberta", {"type_vocab_size": 1, "max_position_embeddings": 66}, "encoder.", "roberta"),
        ("roberta", {}, "roberta.", "roberta"),  # named by its prefix
        (
            "xlm-roberta",
            {"vocab_size": 250002, "type_vocab_size": 1, "max_position_embeddings": 66},
            "model.enc.",
            "xlm-roberta",
        ),
        ("electra", {"embedding_size": 16}, "discriminator.", "electra"),
        ("distilbert", {}, "distilbert.", "distilbert"),
    ],
)
def test_architecture_is_recognised_from_keys_and_shapes(model_type, overrides, prefix, expected):
    state = _encoder(model_type, prefix, **overrides)
    assert guess_model_type(state, prefix) == expected
    assert encoder_prefixes(state) == [prefix]


def test_single_encoder_is_chosen_and_nested_prefixes_work():
    state = {**_encoder("bert", "module.bert."), "module.classifier.weight": torch.zeros(2, 32)}
    assert choose_prefix(state, None) == "module.bert."
    assert choose_prefix(state, "module.bert") == "module.bert."  # trailing dot is optional
    lightning = _encoder("bert", "model.encoder.")
    assert choose_prefix(lightning, None) == "model.encoder."


def test_two_encoders_need_an_explicit_prefix():
    state = {**_encoder("bert", "bert."), **_encoder("bert", "extra_bert.")}
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


def test_summary_counts_tensors_and_parameters_per_prefix():
    state = {
        **_encoder("bert", "bert."),
        "global_feature_weights": torch.zeros(13),
        "trigger_crf.transition": torch.zeros(11, 11),
    }
    rows = {row.prefix: row for row in prefix_summary(state)}
    assert rows["bert."].architecture == "bert"
    assert rows["bert."].tensors == sum(k.startswith("bert.") for k in state)
    assert rows["trigger_crf."].parameters == 121
    assert rows["global_feature_weights"].tensors == 1
    assert {"bert.embeddings.", "bert.encoder.", "bert.pooler."} <= set(rows)
    assert rows["bert.embeddings."].architecture is None
