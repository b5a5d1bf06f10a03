"""check() on exports broken by each real mechanism, and on healthy ones: exact node names."""

from __future__ import annotations

import pytest

from diagnostics import check

LAYERS_TINY = 2
LAYERS_MINILM = 6


def _attention(layers: int, names: tuple[str, ...]) -> list[str]:
    return [f"/model/encoder/layer.{i}/attention/self/{n}" for i in range(layers) for n in names]


SPLIT_AND_MERGE = ("Reshape", "Reshape_1", "Reshape_2", "Reshape_3")
SPLIT_ONLY = ("Reshape", "Reshape_1", "Reshape_2")


def _by_kind(report, kind: str) -> list[str]:
    return [f.node for f in report.findings if f.kind == kind]


@pytest.mark.parametrize("kind", ["healthy-torchscript", "healthy-dynamo"])
def test_healthy_tiny_exports_have_no_findings(tiny, kind):
    report = check(tiny(kind))
    assert report.findings == ()
    assert report.skipped == ()
    assert report.ok


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_extractor_exports_have_no_findings(extracted, exporter):
    report = check(extracted(exporter))
    assert report.findings == ()
    assert report.exporter == exporter
    assert report.dummy_source == "metadata"
    assert report.dummy == {"batch": 3, "sequence": 17}


def test_python_ints_in_attention_freeze_every_reshape_loudly(tiny):
    report = check(tiny("attention-ints"))
    assert _by_kind(report, "frozen-shape") == _attention(LAYERS_TINY, SPLIT_AND_MERGE)
    assert len(report.findings) == 4 * LAYERS_TINY
    split = report.findings[0]
    assert split.op_type == "Reshape"
    assert split.input_index == 1
    assert split.tensor == "/model/encoder/layer.0/attention/self/Constant_output_0"
    assert [(f.position, f.value, f.symbol) for f in split.frozen] == [
        (0, 2, "batch"),
        (1, 8, "sequence"),
    ]
    assert [f.reason for f in split.frozen] == ["2 = export batch", "8 = export sequence"]
    assert split.source.module == "model.encoder.layer.0.attention.self"


def test_silent_minus_one_form_is_flagged(tiny):
    report = check(tiny("attention-ints-minus-one"))
    assert [f.node for f in report.findings] == _attention(LAYERS_TINY, SPLIT_ONLY)
    assert "[2, 8, -1, 16]" in report.findings[0].reason
    assert [f.value for f in report.findings[0].frozen] == [2, 8]


def test_dummy_batch_of_one_is_flagged_as_batch(tiny):
    report = check(tiny("dummy-batch-one"))
    assert [f.node for f in report.findings] == _attention(LAYERS_TINY, SPLIT_AND_MERGE)
    first = report.findings[0].frozen
    assert [(f.value, f.symbol) for f in first] == [(1, "batch"), (8, "sequence")]
    assert first[0].reason == "1 = a dummy batch of 1, specialised"


def test_position_ids_sliced_with_python_int_is_a_folded_constant(tiny):
    report = check(tiny("position-ids-int"))
    assert len(report.findings) == 1
    finding = report.findings[0]
    assert finding.kind == "folded-constant"
    assert finding.node == "/model/embeddings/position_embeddings/Gather"
    assert finding.op_type == "Gather"
    assert finding.input_index == 1
    assert finding.part == "dim"
    assert finding.meets == ("/model/embeddings/Add_1",)
    assert [(f.position, f.value, f.symbol) for f in finding.frozen] == [(1, 8, "sequence")]


def test_dynamic_axes_that_match_no_input_give_static_inputs_and_every_frozen_node(tiny):
    report = check(tiny("static-inputs"))
    assert _by_kind(report, "static-input") == ["input_ids", "attention_mask", "token_type_ids"]
    static = report.findings[0]
    assert [(f.position, f.value, f.symbol) for f in static.frozen] == [
        (0, 2, "batch"),
        (1, 8, "sequence"),
    ]
    assert "dynamic_axes" in static.reason
    assert _by_kind(report, "frozen-shape") == _attention(LAYERS_TINY, SPLIT_AND_MERGE)
    assert _by_kind(report, "folded-constant") == [
        "/model/embeddings/position_embeddings/Gather",
        "/model/GreaterOrEqual",
        "/model/Mul",
        "/model/Add",
        "/model/Equal",
    ]
    assert report.dummy_source == "static inputs"
    assert any("as if dynamic" in note for note in report.notes)


def test_python_ints_under_dynamo_make_static_inputs(tiny):
    report = check(tiny("dynamo-ints"))
    assert _by_kind(report, "static-input") == ["input_ids", "attention_mask", "token_type_ids"]
    assert "torch.export" in report.findings[0].reason
    assert _by_kind(report, "frozen-shape") == [f"node_view{s}" for s in ("", "_1", "_2", "_3")] + [
        f"node_view_{i}" for i in (4, 5, 6, 7)
    ]
    assert _by_kind(report, "folded-constant") == [
        "node_add_1",
        "node_GatherND_38",
        "node_bitwise_and_1",
    ]


def test_dynamo_findings_point_at_file_and_line(tiny):
    report = check(tiny("dynamo-ints"))
    view = next(f for f in report.findings if f.node == "node_view")
    assert view.source.module == "model.encoder.layer.0.attention.self"
    assert view.source.module_class == "BertSelfAttention"
    assert view.source.location.split("/")[-1].startswith("broken_models.py:")
    assert view.source.code == "query = self.query(hidden_states).view(split).transpose(1, 2)"


def test_without_metadata_the_dummy_flag_explains_values(tiny):
    report = check(tiny("attention-ints"), dummy={"batch": 4, "sequence": 8})
    assert report.dummy_source == "--dummy"
    assert [f.reason for f in report.findings[0].frozen] == [
        "2 where batch is dynamic",
        "8 = export sequence",
    ]


# -- real weights ------------------------------------------------------------------------------


def test_minilm_healthy_torchscript_has_no_findings(minilm):
    assert check(minilm("healthy-torchscript")).findings == ()


def test_minilm_healthy_dynamo_has_no_findings(minilm):
    assert check(minilm("healthy-dynamo")).findings == ()


def test_minilm_python_ints_in_attention(minilm):
    report = check(minilm("attention-ints"))
    assert [f.node for f in report.findings] == _attention(LAYERS_MINILM, SPLIT_AND_MERGE)
    assert "[2, 8, 12, 32]" in report.findings[0].reason


def test_minilm_silent_minus_one_form(minilm):
    report = check(minilm("attention-ints-minus-one"))
    assert [f.node for f in report.findings] == _attention(LAYERS_MINILM, SPLIT_ONLY)
    assert "[2, 8, -1, 32]" in report.findings[0].reason


def test_minilm_position_ids_sliced_with_python_int(minilm):
    report = check(minilm("position-ids-int"))
    assert [(f.kind, f.node) for f in report.findings] == [
        ("folded-constant", "/model/embeddings/position_embeddings/Gather")
    ]
