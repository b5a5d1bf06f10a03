from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

from extractor.errors import WeightMismatchError
from extractor.resolve.model import build_model, load_saved_model

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
)


@pytest.fixture()
def source():
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", **TINY)
    return config, AutoModel.from_config(config).eval()


def test_weights_are_loaded_exactly_and_shared_not_copied(source):
    config, original = source
    weights = dict(original.state_dict())
    model, keys = build_model(config, weights)
    assert keys.ok and keys.loaded == len(weights)
    word = model.embeddings.word_embeddings.weight
    assert word.data_ptr() == weights["embeddings.word_embeddings.weight"].data_ptr()
    ids = torch.randint(0, 99, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(ids).last_hidden_state, original(ids).last_hidden_state)


def test_transformers_4_position_ids_buffer_is_tolerated_and_listed(source):
    config, original = source
    weights = {**original.state_dict(), "embeddings.position_ids": torch.arange(64)[None]}
    _, keys = build_model(config, weights)
    assert keys.ok
    assert [k for k, _ in keys.tolerated] == ["embeddings.position_ids"]


def test_every_mismatch_is_reported_at_once(source):
    config, original = source
    weights = dict(original.state_dict())
    del weights["encoder.layer.1.output.dense.bias"]
    weights["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(40, 32)
    weights["crf.transition"] = torch.zeros(3, 3)
    with pytest.raises(WeightMismatchError) as info:
        build_model(config, weights)
    keys = info.value.keys
    assert keys.missing == ["encoder.layer.1.output.dense.bias"]
    assert keys.unexpected == ["crf.transition"]
    assert keys.shape_mismatches == [
        ("encoder.layer.0.intermediate.dense.weight", (40, 32), (37, 32))
    ]
    assert str(info.value) == (
        "weights do not fit the model: 1 missing (e.g. encoder.layer.1."
        "output.dense.bias), 1 unexpected (e.g. crf.transition), 1 "
        "mis-shaped (e.g. encoder.layer.0.intermediate.dense.weight)"
    )


def test_encoder_saved_without_pooler_is_built_without_one(source):
    config, original = source
    weights = {k: v for k, v in original.state_dict().items() if not k.startswith("pooler.")}
    model, keys = build_model(config, weights)
    assert model.pooler is None
    assert keys.tolerated == [("pooler.*", "not in the checkpoint; model built without pooler")]


def test_no_pooler_leaves_the_checkpoint_pooler_out(source):
    config, original = source
    model, keys = build_model(config, dict(original.state_dict()), pooler=False)
    assert model.pooler is None
    assert keys.ok and keys.loaded == len(original.state_dict()) - 2
    assert keys.tolerated == [("pooler.*", "2 tensors left out (no pooler asked for)")]


def test_saved_model_without_pooler_is_reloaded_without_a_random_one(source, tmp_path):
    config, original = source
    weights = {k: v for k, v in original.state_dict().items() if not k.startswith("pooler.")}
    build_model(config, weights)[0].save_pretrained(tmp_path / "no_pooler")
    original.save_pretrained(tmp_path / "with_pooler")
    assert load_saved_model(tmp_path / "no_pooler").pooler is None
    kept = load_saved_model(tmp_path / "with_pooler")
    assert torch.equal(kept.pooler.dense.weight, original.pooler.dense.weight)


def test_half_precision_weights_are_converted_to_float32(source):
    config, original = source
    weights = {k: v.half() for k, v in original.state_dict().items()}
    model, keys = build_model(config, weights)
    assert keys.converted_dtype == "float16 -> float32"
    assert model.embeddings.word_embeddings.weight.dtype == torch.float32
