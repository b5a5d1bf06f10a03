"""One rule per op family, on small graphs: legitimate constants pass, frozen ones are found.

The end-to-end mechanisms are in test_check.py (real exports); these pin each rule's edge.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from diagnostics import check
from diagnostics.analysis.frozen import interpret
from diagnostics.analysis.signature import read_signature

HIDDEN = 384  # 12 heads of 32, like MiniLM


def _model(nodes, constants, output_rank=3, extra_inputs=()):
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        *extra_inputs,
    ]
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in constants.items()]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * output_rank)
    graph = helper.make_graph(nodes, "g", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="subgraft.dummy_batch", value="2")
    model.metadata_props.add(key="subgraft.dummy_sequence", value="8")
    return model


def _reshape(target):
    return _model([helper.make_node("Reshape", ["x", "t"], ["y"], name="r")], {"t": target})


@pytest.mark.parametrize(
    "target",
    [[-1], [0, 0, 12, 32], [0, 0, -1, 32], [-1, HIDDEN], [1, -1, HIDDEN], [0, -1]],
)
def test_legitimate_reshape_targets_are_not_findings(target):
    assert check(_reshape(target)).findings == ()


@pytest.mark.parametrize(
    ("target", "frozen"),
    [
        ([2, 8, 12, 32], [(0, 2, "batch"), (1, 8, "sequence")]),
        ([2, 8, -1, 32], [(0, 2, "batch"), (1, 8, "sequence")]),
        ([0, 8, -1, 32], [(1, 8, "sequence")]),
        ([16, HIDDEN], [(0, 16, "batch*sequence")]),
    ],
)
def test_frozen_reshape_targets_say_what_each_value_should_be(target, frozen):
    (finding,) = check(_reshape(target)).findings
    assert finding.node == "r" and finding.kind == "frozen-shape" and finding.input_index == 1
    assert [(f.position, f.value, f.symbol) for f in finding.frozen] == frozen


def test_bert_large_heads_with_dummy_sizes_that_divide_are_still_found():
    # 1024 / (2 * 8 * 64) = 1: the -1 absorbs batch*sequence, numerically consistent.
    model = _model(
        [helper.make_node("Reshape", ["x", "t"], ["y"], name="r")], {"t": [2, 8, -1, 64]}
    )
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 1024
    (finding,) = check(model).findings
    assert [f.value for f in finding.frozen] == [2, 8]


def test_expand_with_literal_batch_against_symbolic_data():
    nodes = [
        helper.make_node("Unsqueeze", ["input_ids", "ax"], ["u"], name="u"),
        helper.make_node("Expand", ["u", "shape"], ["e"], name="expand"),
        helper.make_node("Cast", ["e"], ["y"], to=TensorProto.FLOAT, name="c"),
    ]
    (finding,) = check(_model(nodes, {"ax": [1], "shape": [2, 12, 8]})).findings
    assert finding.node == "expand" and finding.kind == "folded-constant"
    assert [(f.value, f.symbol) for f in finding.frozen] == [(2, "batch"), (8, "sequence")]


def test_expand_to_head_count_is_legitimate():
    nodes = [
        helper.make_node("Unsqueeze", ["input_ids", "ax"], ["u"], name="u"),
        helper.make_node("Shape", ["input_ids"], ["s"], name="s"),
        helper.make_node("Gather", ["s", "zero"], ["b"], name="g", axis=0),
        helper.make_node("Concat", ["b", "heads", "minus"], ["shape"], name="cat", axis=0),
        helper.make_node("Expand", ["u", "ones"], ["e"], name="expand"),
        helper.make_node("Cast", ["e"], ["y"], to=TensorProto.FLOAT, name="c"),
    ]
    constants = {"ax": [1], "zero": [0], "heads": [12], "minus": [-1], "ones": [1, 12, 1]}
    assert check(_model(nodes, constants)).findings == ()


@pytest.mark.parametrize(
    ("op", "kind", "make"),
    [
        # The literal is an element of a constant shape input: a folded constant.
        (
            "ConstantOfShape",
            "folded-constant",
            lambda: helper.make_node("ConstantOfShape", ["shape"], ["k"], name="op"),
        ),
        (
            "Tile",
            "folded-constant",
            lambda: helper.make_node("Tile", ["one", "reps"], ["k"], name="op"),
        ),
        # The length is computed by the node from literal bounds.
        (
            "Range",
            "frozen-shape",
            lambda: helper.make_node("Range", ["start", "limit", "delta"], ["k"], name="op"),
        ),
    ],
)
def test_literal_sizes_born_in_shape_ops_are_found_where_they_meet_a_symbol(op, kind, make):
    nodes = [
        make(),
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Unsqueeze", ["kf", "ax"], ["ku"], name="unsq"),
        helper.make_node("Add", ["x", "ku"], ["y"], name="meet"),
    ]
    constants = {"shape": [8], "start": 0, "limit": 8, "delta": 1, "one": [1], "reps": [8]}
    constants["ax"] = [0, 2]
    (finding,) = check(_model(nodes, constants)).findings
    assert (finding.node, finding.op_type, finding.kind) == ("op", op, kind)
    assert finding.meets == ("meet",)
    assert [(f.value, f.symbol) for f in finding.frozen] == [(8, "sequence")]


def test_slice_cutting_a_dynamic_axis_at_its_export_size():
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="cut")]
    (finding,) = check(_model(nodes, {"starts": [0], "ends": [8], "axes": [1]})).findings
    assert (finding.node, finding.input_index) == ("cut", 2)
    assert [(f.value, f.symbol) for f in finding.frozen] == [(8, "sequence")]


def test_slice_to_the_end_or_first_token_is_legitimate():
    nodes = [
        helper.make_node("Slice", ["x", "starts", "big", "axes"], ["a"], name="all"),
        helper.make_node("Slice", ["a", "starts", "one", "axes"], ["y"], name="cls"),
    ]
    constants = {"starts": [0], "big": [2**63 - 1], "one": [1], "axes": [1]}
    assert check(_model(nodes, constants)).findings == ()


def test_resize_with_literal_sizes_on_dynamic_axes():
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize")]
    (finding,) = check(_model(nodes, {"sizes": [2, 8, HIDDEN]})).findings
    assert finding.node == "resize" and finding.input_index == 3
    assert [f.symbol for f in finding.frozen] == ["batch", "sequence"]


def test_model_without_metadata_uses_the_static_dims_as_dummy():
    model = _reshape([-1])
    del model.metadata_props[:]
    report = check(model)
    assert report.dummy == {"batch": 2, "sequence": 8} and report.dummy_source == "default"


def test_two_routes_to_one_sum_are_one_size():
    """Derived sizes are exact sympy expressions: however a sum is reached, it is one size,
    and one that cancels down to a symbol is that symbol."""
    import onnx

    from diagnostics.analysis.dims import Dim, Expr
    from diagnostics.analysis.propagate_common import sum_of
    from diagnostics.analysis.state import SymbolState

    it = SymbolState(onnx.GraphProto(), lambda tensor: None, sizes={"past": 6, "sequence": 8})
    batch, past, sequence = (Dim(Expr.of(n)) for n in ("batch", "past", "sequence"))
    total = sum_of(it, [past, sequence])
    twice = Dim(sequence.expr * Expr.of(2))
    assert sum_of(it, [sum_of(it, [twice, past]), sequence], [1, -1]) == total
    assert sum_of(it, [sequence, past]) == total and str(total) == "(past + sequence)"
    assert sum_of(it, [total, past], [1, -1]) == sequence
    # batch*past + batch*sequence is batch times the same sum, not a size of its own
    spread = sum_of(it, [Dim(batch.expr * past.expr), Dim(batch.expr * sequence.expr)])
    assert spread.expr == batch.expr * total.expr
    assert it.size_of(total.expr) == 14


def test_a_strided_convolution_and_its_integer_division_are_one_size():
    """wav2vec2's first two convolutions (kernel 10 stride 5, kernel 3 stride 2) and dynamo's
    `samples // 10 - 1`: equal as expressions, not only at sampled sizes."""
    from diagnostics.analysis.dims import floor_div, from_sympy, symbol

    samples = symbol("samples")
    first = floor_div(samples - 10 + 5, 5)  # floor((x - k)/s) + 1 = floor((x - k + s)/s)
    second = floor_div(first - 3 + 2, 2)
    assert from_sympy(second) == from_sympy(floor_div(samples, 10) - 1)
    assert str(from_sympy(second)) == "(floor(samples/10) - 1)"
    assert from_sympy(floor_div(samples, 2, ceil=True)) == from_sympy(floor_div(samples + 1, 2))


def test_a_sum_reached_two_ways_meets_itself_without_a_finding():
    """A Concat makes the axis `sequence + 1`; a shape computed as `(2*sequence + 1) -
    sequence` makes a tensor of the same size: the two are one size, nothing is frozen."""
    nodes = [
        helper.make_node("Slice", ["x", "zero", "one", "axis1"], ["first"], name="first"),
        helper.make_node("Concat", ["x", "first"], ["longer"], name="longer", axis=1),
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="batch", axis=0),
        helper.make_node("Gather", ["shape", "one"], ["seq"], name="seq", axis=0),
        helper.make_node("Mul", ["seq", "two"], ["twice"], name="twice"),
        helper.make_node("Add", ["twice", "one"], ["plus"], name="plus"),
        helper.make_node("Sub", ["plus", "seq"], ["total"], name="total"),
        helper.make_node("Concat", ["batch", "total", "hidden"], ["target"], name="target",
                         axis=0),
        helper.make_node("Cast", ["target"], ["ones_f"], name="ones_f", to=TensorProto.FLOAT),
        helper.make_node("ConstantOfShape", ["target"], ["ones"], name="ones"),
        helper.make_node("Cast", ["ones"], ["ones_x"], name="ones_x", to=TensorProto.FLOAT),
        helper.make_node("Add", ["longer", "ones_x"], ["y"], name="add"),
    ]
    constants = {"zero": [0], "one": [1], "axis1": [1], "two": [2], "hidden": [HIDDEN]}
    model = _model(nodes, constants)
    report = check(model)
    assert report.findings == () and report.verdict == "clean", (report.findings, report.skipped)
    shapes = interpret(model, numpy_helper.to_array, read_signature(model, None))[0].shapes
    assert shapes["longer"][1] == shapes["ones"][1] and str(shapes["ones"][1]) == "(sequence + 1)"
