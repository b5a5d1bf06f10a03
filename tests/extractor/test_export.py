from __future__ import annotations

import onnx
import pytest
import torch
from transformers import AutoConfig, AutoModel

from extractor.export import export_onnx
from extractor.export_inputs import (
    EncoderWrapper,
    choose_dummy_sizes,
    dummy_inputs,
    input_names_for,
)
from extractor.parity import compare_onnx, parity_cases, reference_outputs

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=256,
)


def _model(model_type: str = "bert", **values):
    torch.manual_seed(0)
    if model_type == "distilbert":
        config = AutoConfig.for_model(
            "distilbert",
            vocab_size=99,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=37,
            max_position_embeddings=256,
        )
    else:
        config = AutoConfig.for_model(model_type, **{**TINY, **values})
    return AutoModel.from_config(config).eval()


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _verify(model, path, settings, atol=1e-4):
    wrapper = EncoderWrapper(model, settings.input_names, False)
    cases = parity_cases(model.config, settings.dummy_batch, settings.dummy_sequence)
    refs = reference_outputs(
        wrapper, model.config, settings.input_names, settings.output_names, cases
    )
    return compare_onnx(path, refs, atol=atol)


@pytest.mark.parametrize(
    "model_type, values, expected",
    [
        ("bert", {}, ["input_ids", "attention_mask", "token_type_ids"]),
        ("roberta", {"type_vocab_size": 1, "pad_token_id": 1}, ["input_ids", "attention_mask"]),
        ("distilbert", {}, ["input_ids", "attention_mask"]),
    ],
)
def test_input_names_follow_the_forward_signature(model_type, values, expected):
    assert input_names_for(_model(model_type, **values)) == expected


def test_dummy_sizes_collide_with_no_config_dimension():
    # hidden 3 heads 1: batch 3 is taken; sequence 17 is the intermediate size.
    config = AutoConfig.for_model(
        "bert",
        vocab_size=99,
        hidden_size=3,
        num_hidden_layers=5,
        num_attention_heads=1,
        intermediate_size=17,
        max_position_embeddings=64,
    )
    batch, sequence = choose_dummy_sizes(config)
    assert (batch, sequence) == (7, 19)
    assert batch != sequence and min(batch, sequence) > 1


def test_dummy_mask_is_padded_so_the_mask_path_is_traced():
    model = _model()
    inputs = dummy_inputs(model.config, input_names_for(model), 3, 17)
    assert inputs["attention_mask"][:-1].all() and not inputs["attention_mask"][-1].all()


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_is_dynamic_records_metadata_and_matches_pytorch(tmp_path, exporter):
    model = _model()
    path = tmp_path / "model.onnx"
    settings = export_onnx(model, path, exporter=exporter)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in proto.graph.output][0] == "last_hidden_state"
    dims = {i.name: _dims(i) for i in proto.graph.input}
    assert all(d == ["batch", "sequence"] for d in dims.values()), (
        f"expected every input dynamic as [batch, sequence], saw {dims}")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["subgraft.exporter"] == exporter
    assert meta["subgraft.dummy_batch"] == str(settings.dummy_batch) == "3"
    assert meta["subgraft.dummy_sequence"] == str(settings.dummy_sequence) == "17"
    assert meta["subgraft.opset"] == str(settings.opset)
    parity = _verify(model, path, settings)
    assert parity.ok, parity.failures
    assert {(r.batch, r.sequence) for r in parity.results} >= {(1, 9), (2, 160)}
    # Tighter than the 1e-4 tolerance; fp32 kernels of any CPU stay near 1e-6 on this model.
    worst = max(r.max_abs for r in parity.results)
    assert worst < 1e-5, f"expected parity within 1e-5 at every shape, saw {worst:.2e}"


def test_external_data_is_written_beside_the_model(tmp_path):
    model = _model()
    settings = export_onnx(model, tmp_path / "model.onnx", external_data=True)
    proto = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    external = {
        t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    }
    assert any("word_embeddings" in name for name in external)
    assert (tmp_path / "model.onnx.data").stat().st_size > 30_000
    assert _verify(model, tmp_path / "model.onnx", settings).ok


def test_hidden_states_become_outputs(tmp_path):
    model = _model()
    settings = export_onnx(model, tmp_path / "model.onnx", hidden_states=True)
    assert settings.output_names == [
        "last_hidden_state",
        "pooler_output",
        "hidden_states.0",
        "hidden_states.1",
        "hidden_states.2",
    ]
    wrapper = EncoderWrapper(model, settings.input_names, True)
    cases = parity_cases(model.config, settings.dummy_batch, settings.dummy_sequence)[:2]
    refs = reference_outputs(
        wrapper, model.config, settings.input_names, settings.output_names, cases
    )
    assert compare_onnx(tmp_path / "model.onnx", refs).ok


def test_parity_fails_an_output_pytorch_does_not_give(tmp_path):
    model = _model()
    settings = export_onnx(model, tmp_path / "model.onnx")
    model.pooler = None  # PyTorch no longer gives pooler_output; the ONNX file still does
    wrapper = EncoderWrapper(model, settings.input_names, False)
    cases = parity_cases(model.config, settings.dummy_batch, settings.dummy_sequence)[:2]
    refs = reference_outputs(wrapper, model.config, settings.input_names,
                             ["last_hidden_state"], cases)
    parity = compare_onnx(tmp_path / "model.onnx", refs)
    assert not parity.ok
    failed = {(r.output, r.error) for r in parity.results if not r.ok}
    assert failed == {("pooler_output", "not an output of the PyTorch model")}


def _positional_export_parity(tmp_path, input_names, dynamic_axes):
    """Export the wrapper positionally under `input_names` (TorchScript), then compare it
    with PyTorch fed by name at every parity case."""
    model = _model()
    wrapper = EncoderWrapper(model, ["input_ids", "attention_mask", "token_type_ids"], False)
    args = tuple(dummy_inputs(model.config, wrapper.input_names, 3, 17).values())
    path = tmp_path / "positional.onnx"
    outputs = ["last_hidden_state", "pooler_output"]
    torch.onnx.export(wrapper, args, str(path), dynamo=False, input_names=input_names,
                      output_names=outputs, dynamic_axes=dynamic_axes)
    cases = parity_cases(model.config, 3, 17)
    refs = reference_outputs(wrapper, model.config, wrapper.input_names, outputs, cases)
    return compare_onnx(path, refs), cases


def test_parity_catches_inputs_swapped_by_positional_names(tmp_path):
    # The silent swap: a tokenizer's key order used as input_names for a positional export.
    tokenizer_order = ["input_ids", "token_type_ids", "attention_mask"]
    parity, _ = _positional_export_parity(
        tmp_path, tokenizer_order, {n: {0: "batch", 1: "sequence"} for n in tokenizer_order}
    )
    assert not parity.ok
    errors = [r.error for r in parity.results if r.error is not None]
    assert not errors, f"expected it to run at every shape, saw {errors}"
    worst = max(r.max_abs for r in parity.results)
    assert worst > 0.1, f"expected the swapped inputs to be wrong by over 0.1, saw {worst:.2e}"


def test_parity_reports_each_shape_a_static_export_fails_at(tmp_path):
    # dynamic_axes keys that match no input name: the TorchScript exporter only warns.
    parity, cases = _positional_export_parity(
        tmp_path, ["input_ids", "attention_mask", "token_type_ids"],
        {"ids": {0: "batch", 1: "sequence"}},
    )
    assert len(parity.failures) == len(parity.results) == 2 * len(cases)
    others = [r.error for r in parity.failures if "invalid dimensions" not in r.error]
    assert not others, f"expected every failure to be 'invalid dimensions', saw {others}"
