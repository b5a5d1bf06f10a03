from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders.layouts import hf_snapshot
from builders.tiny_encoders import tiny_config

from extractor.errors import ArchitectureError
from extractor.resolve.architecture import resolve_config
from extractor.resolve.checkpoint import Checkpoint
from extractor.resolve.config_fit import config_problem
from extractor.resolve.encoders import meta_state_dict
from extractor.resolve.known_configs import builtin_config

TINY = dict(
    vocab_size=99,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=37,
    max_position_embeddings=64,
)


def _weights(model_type: str = "bert", **values):
    return meta_state_dict(tiny_config(model_type, **{**TINY, **values}))


def _checkpoint(tmp_path: Path, extra: dict) -> Checkpoint:
    path = tmp_path / "model.bin"
    return Checkpoint(path, "torch-zip", {}, "checkpoint['model']", extra, weights_file=path)


def _write_config(directory: Path, **values) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps({"model_type": "bert", **TINY, **values}))
    return path


def test_explicit_config_file_wins(tmp_path):
    path = _write_config(tmp_path / "cfg")
    resolved = resolve_config(_weights(), _checkpoint(tmp_path, {}), config_file=path)
    assert (resolved.kind, resolved.config.num_attention_heads) == ("config-file", 3)


def test_explicit_config_that_does_not_fit_is_an_error(tmp_path):
    path = _write_config(tmp_path / "cfg", hidden_size=64, num_attention_heads=4)
    with pytest.raises(ArchitectureError, match="does not fit the weights: shape mismatch"):
        resolve_config(_weights(), config_file=path)


def test_model_directory_gives_config_and_tokenizer(minilm_dir):
    from transformers import AutoConfig

    weights = meta_state_dict(AutoConfig.from_pretrained(minilm_dir))
    resolved = resolve_config(weights, model=minilm_dir)
    assert resolved.kind == "model" and resolved.tokenizer_dir == minilm_dir
    assert resolved.config.num_attention_heads == 12


def test_hub_name_not_in_local_cache_says_so_and_downloads_nothing():
    with pytest.raises(
        ArchitectureError, match="nor in the local Hugging Face cache.*nothing is downloaded"
    ):
        resolve_config(_weights(), model="someone/never-cached-model")


def test_hub_name_found_in_local_cache(tmp_path):
    _write_config(hf_snapshot(tmp_path / "hub", "acme/tiny"))
    resolved = resolve_config(_weights(), model="acme/tiny", cache_dir=tmp_path / "hub")
    assert resolved.config.num_attention_heads == 3


def test_name_in_the_checkpoint_resolves_a_directory_beside_it(tmp_path):
    _write_config(tmp_path / "tiny-encoder")
    ckpt = _checkpoint(tmp_path, {"config": {"bert_model_name": "tiny-encoder"}})
    resolved = resolve_config(_weights(), ckpt)
    assert resolved.kind == "found"
    assert resolved.source == "checkpoint['config']['bert_model_name']='tiny-encoder' (local files)"


def test_oneie_bert_large_cased_comes_from_the_builtin_table(tmp_path):
    weights = meta_state_dict(builtin_config("bert-large-cased"))
    ckpt = _checkpoint(tmp_path, {"config": {"bert_model_name": "bert-large-cased"}})
    resolved = resolve_config(weights, ckpt)
    assert resolved.kind == "builtin"
    assert (resolved.config.hidden_size, resolved.config.num_attention_heads) == (1024, 16)


def test_a_name_that_disagrees_with_the_weights_is_rejected_and_nothing_is_guessed(tmp_path):
    # OneIE's default name, but the weights are a tiny model: no heads may be guessed.
    ckpt = _checkpoint(tmp_path, {"config": {"bert_model_name": "bert-large-cased"}})
    with pytest.raises(ArchitectureError) as caught:
        resolve_config(_weights(), ckpt)
    message = str(caught.value)
    assert "bert-large-cased" in message and "shape mismatch" in message
    assert "bert layout, shared by bert, roberta" in message
    assert "--set model_type=...,num_attention_heads=N" in message
    assert "\n" not in message


def test_shapes_with_the_heads_given_build_the_model_and_say_what_was_assumed(tmp_path):
    resolved = resolve_config(_weights(), _checkpoint(tmp_path, {}),
                              overrides={"model_type": "bert", "num_attention_heads": 3})
    assert resolved.kind == "shapes"
    config = resolved.config
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (48, 2, 37)
    assert (config.vocab_size, config.max_position_embeddings) == (99, 64)
    assert config.num_attention_heads == 3
    assert resolved.assumed["hidden_act"] == "gelu"
    assert config_problem(config, _weights()) is None


def test_shapes_without_heads_are_refused_and_accepted_with_them(tmp_path):
    weights = _weights("convbert")  # a layout of its own, so the type is known
    with pytest.raises(ArchitectureError, match="give .*hidden_size=48.* but not "
                       "num_attention_heads: pass --config or --model, or --set "
                       "num_attention_heads=..."):
        resolve_config(weights, _checkpoint(tmp_path, {}))
    resolved = resolve_config(weights, _checkpoint(tmp_path, {}),
                              overrides={"num_attention_heads": 3})
    assert resolved.config.model_type == "convbert" and resolved.config.num_attention_heads == 3


def test_heads_read_from_the_weights_still_need_the_users_word_to_build_from_shapes(tmp_path):
    # MPNet's relative-attention bias is [buckets, heads]: the heads are in the weights,
    # but its activation and norm epsilon are not.
    weights = _weights("mpnet", relative_attention_num_buckets=32)
    with pytest.raises(ArchitectureError, match="give .*num_attention_heads=3.*, but no file "
                       "says the rest \\(hidden_act=gelu, layer_norm_eps=1e-12 would be"):
        resolve_config(weights, _checkpoint(tmp_path, {}))
    resolved = resolve_config(weights, _checkpoint(tmp_path, {}),
                              overrides={"layer_norm_eps": 1e-5})
    assert resolved.config.num_attention_heads == 3 and resolved.config.layer_norm_eps == 1e-5


@pytest.mark.parametrize(
    "model_type, values, also_needed",
    [
        ("albert", {"embedding_size": 16}, "num_hidden_layers"),  # layers share weights
        ("deberta-v2", {}, "pos_att_type"),  # relative attention types are not in the weights
    ],
)
def test_values_shapes_cannot_show_are_asked_for(tmp_path, model_type, values, also_needed):
    weights = _weights(model_type, **values)
    with pytest.raises(ArchitectureError, match=f"num_attention_heads, {also_needed}"):
        resolve_config(weights, _checkpoint(tmp_path, {}))


def test_deberta_v3_shapes_read_the_position_buckets(tmp_path):
    weights = _weights("deberta-v2")  # tiny_config: v3 settings, 16 buckets
    resolved = resolve_config(weights, _checkpoint(tmp_path, {}), overrides={
        "num_attention_heads": 3, "pos_att_type": "p2c|c2p"})
    config = resolved.config
    assert (config.position_buckets, config.pos_att_type) == (16, ["p2c", "c2p"])
    assert config.relative_attention and not config.position_biased_input


def test_spanmarker_nested_encoder_config_is_found_and_its_vocab_read_from_weights(tmp_path):
    encoder = tiny_config("bert", **TINY).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "span-marker", "encoder": encoder, "marker_max_length": 16}))
    weights = _weights(vocab_size=104)  # two marker tokens, padded to a multiple of 8
    resolved = resolve_config(weights, _checkpoint(tmp_path, {}))
    assert resolved.source == "config.json['encoder']"
    assert resolved.config.vocab_size == 104
    assert resolved.adjusted == ["vocab_size 99 -> 104 (the embedding's rows)"]


def test_gliner_bi_encoder_picks_the_config_of_the_chosen_encoder(tmp_path):
    tokens = tiny_config("bert", **TINY).to_dict()
    labels = tiny_config("deberta-v2", **TINY).to_dict()
    (tmp_path / "gliner_config.json").write_text(json.dumps({
        "model_type": None, "model_name": "microsoft/deberta-v3-small",
        "encoder_config": tokens, "labels_encoder_config": labels}))
    ckpt = _checkpoint(tmp_path, {})
    chosen = resolve_config(_weights("deberta-v2"), ckpt,
                            prefix="token_rep_layer.labels_encoder.model.")
    assert chosen.source == "gliner_config.json['labels_encoder_config']"
    main = resolve_config(_weights(), ckpt, prefix="token_rep_layer.bert_layer.model.")
    assert main.source == "gliner_config.json['encoder_config']"


def test_config_object_attributes_and_lightning_hyper_parameters_are_read(tmp_path):
    class Namespace:  # what a stand-in or argparse.Namespace looks like: attributes
        def __init__(self, **values):
            self.__dict__.update(values)

    _write_config(tmp_path / "enc")
    ckpt = _checkpoint(tmp_path, {"hyper_parameters": {"args": Namespace(model_name="enc")}})
    resolved = resolve_config(_weights(), ckpt)
    assert resolved.source == "checkpoint['hyper_parameters']['args']['model_name']='enc' " \
        "(local files)"


def test_set_overrides_a_found_config_and_is_reported(tmp_path):
    _write_config(tmp_path / "enc")
    ckpt = _checkpoint(tmp_path, {"config": {"model_name": "enc"}})
    resolved = resolve_config(_weights(), ckpt, overrides={"hidden_act": "gelu_new"})
    assert resolved.config.hidden_act == "gelu_new"
    assert resolved.overrides == {"hidden_act": "gelu_new"}


def test_unknown_architecture_is_refused():
    import torch

    with pytest.raises(ArchitectureError, match="no encoder transformers knows"):
        resolve_config({"fc.weight": torch.zeros(3, 3)})
