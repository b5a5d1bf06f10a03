from __future__ import annotations

import torch
from transformers import AutoConfig

from extractor.resolve.config_fit import config_problem
from extractor.resolve.encoders import build_meta
from extractor.resolve.keys import BENIGN_EXTRA, POOLER, compare_keys, tied_names

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=37, max_position_embeddings=64)


def _expected(model_type: str, **values) -> dict:
    return build_meta(AutoConfig.for_model(model_type, **values)).state_dict(keep_vars=True)


def test_a_tied_parameter_is_present_when_any_of_its_names_is():
    expected = _expected("t5", vocab_size=99, d_model=32, d_kv=16, d_ff=37, num_layers=1,
                         num_heads=2)
    tied = tied_names(expected)
    assert tied["shared.weight"] == ["encoder.embed_tokens.weight"]
    weights = {k: v for k, v in expected.items() if k != "encoder.embed_tokens.weight"}
    assert compare_keys(expected, weights).ok
    del weights["shared.weight"]
    assert compare_keys(expected, weights).missing == [
        "shared.weight", "encoder.embed_tokens.weight"]


def test_benign_buffers_are_tolerated_with_their_reason_and_others_are_unexpected():
    expected = {k: v for k, v in _expected("bert", **TINY).items()
                if k not in BENIGN_EXTRA}
    weights = {**expected, "embeddings.position_ids": torch.arange(64)[None],
               "crf.transition": torch.zeros(3, 3)}
    keys = compare_keys(expected, weights)
    assert keys.tolerated == [("embeddings.position_ids",
                               BENIGN_EXTRA["embeddings.position_ids"])]
    assert keys.unexpected == ["crf.transition"]


def test_a_pooler_may_be_missing_only_where_it_is_optional():
    expected = _expected("bert", **TINY)
    weights = {k: v for k, v in expected.items() if not k.startswith(POOLER)}
    assert compare_keys(expected, weights).missing == ["pooler.dense.weight",
                                                        "pooler.dense.bias"]
    assert compare_keys(expected, weights, optional=(POOLER,)).ok


def test_choosing_a_config_and_loading_weights_report_the_same_shape_mismatch():
    config = AutoConfig.for_model("bert", **TINY)
    expected = _expected("bert", **TINY)
    weights = {k: torch.zeros(v.shape) for k, v in expected.items()}
    weights["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(40, 32)
    keys = compare_keys(expected, weights)
    assert keys.shape_mismatches == [
        ("encoder.layer.0.intermediate.dense.weight", (40, 32), (37, 32))]
    assert config_problem(config, weights) == (
        "shape mismatch encoder.layer.0.intermediate.dense.weight [40, 32] vs [37, 32]")
