"""A finding's edit is one transaction: kept whole when its rule returns a change, and
gone without a trace when it declines; anchors are never names a node could also have."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from diagnostics import check, repair
from diagnostics.analysis.dims import Expr
from diagnostics.analysis.frozen import interpret
from diagnostics.analysis.signature import read_signature
from diagnostics.findings import Finding, FrozenValue, SymbolInfo
from diagnostics.loading import LoadedModel
from diagnostics.repair.edit import Declined, GraphEdit, to_proto
from diagnostics.repair.plan import repair_pass
from diagnostics.repair.size_nodes import vector

# "s0*s1" is one input's symbol, as the dynamo exporter names a derived dim: the input
# defines it, so `Shape -> Gather` of that input rebuilds it (before sizes were exact
# expressions, repair read the name back as a product of s0 and s1 and declined).
DUMMY = {"batch": 2, "s0*s1": 8}


def _one_repaired_one_declined() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "s0*s1"])
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in "yz"]
    constants = [numpy_helper.from_array(np.array(v, np.int64), n)
                 for n, v in [("frozen", [2, 8]), ("target", [2, 8, 1])]]
    constants.append(numpy_helper.from_array(np.array([1.0], np.float32), "one"))
    nodes = [
        helper.make_node("Expand", ["one", "frozen"], ["ones"], name="frozen_expand"),
        helper.make_node("Add", ["x", "ones"], ["y"], name="add"),
        helper.make_node("Reshape", ["x", "target"], ["z"], name="reshape"),
    ]
    graph = helper.make_graph(nodes, "g", [x], outputs, constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             producer_name="pytorch")


def _pass(model: onnx.ModelProto, findings: list[Finding], dummy: dict[str, int] = DUMMY):
    """`repair_pass` over `findings` only, with the shapes `check` propagates."""
    report = replace(check(model, dummy=dummy), findings=tuple(findings))
    loaded = LoadedModel(model, None, "inline")
    shapes = interpret(model, loaded.read_tensor, read_signature(model, dummy))[0].shapes
    return repair_pass(model, report, shapes, loaded.read_tensor)


def test_a_dim_named_like_a_product_is_the_input_s_own_symbol_and_is_rebuilt(tmp_path):
    out = tmp_path / "repaired.onnx"
    report = repair(_one_repaired_one_declined(), out, dummy=DUMMY)
    assert [(c.node, c.after) for c in report.changes] == [
        ("frozen_expand", "[batch, s0*s1]"), ("reshape", "[0, 0, 1]")]
    assert not report.refusals and report.ok and report.output and out.exists()


def test_a_rule_that_declines_part_way_leaves_nothing_behind():
    model = _one_repaired_one_declined()
    batch = SymbolInfo("batch", "batch", "x", 0, 2)
    edit = GraphEdit(ir.from_proto(model), {}, {"batch": batch},
                     LoadedModel(model, None, "inline").read_tensor)

    def rule(edit: GraphEdit, finding: Finding, index: int):
        vector(edit, [Expr.of("batch"), 4], "frozen_expand")  # Shape, Gather, Concat built
        edit.release("frozen")
        return Declined("the second size cannot be built")

    finding = check(model, dummy=DUMMY).findings[0]
    assert isinstance(edit.attempt(rule, finding, 0), Declined)
    edit.finish()
    assert to_proto(edit.model, model).SerializeToString() == model.SerializeToString()


def test_a_rule_that_raises_part_way_leaves_nothing_behind():
    """A value a hostile file chose can raise inside a rule (`repair_pass` makes it a
    refusal): what the rule built before it is dropped all the same."""
    model = _one_repaired_one_declined()
    batch = SymbolInfo("batch", "batch", "x", 0, 2)
    edit = GraphEdit(ir.from_proto(model), {}, {"batch": batch},
                     LoadedModel(model, None, "inline").read_tensor)

    def rule(edit: GraphEdit, finding: Finding, index: int):
        vector(edit, [Expr.of("batch"), 4], "frozen_expand")
        edit.release("frozen")
        raise ArithmeticError("a size no graph can have")

    finding = check(model, dummy=DUMMY).findings[0]
    with pytest.raises(ArithmeticError):
        edit.attempt(rule, finding, 0)
    edit.finish()
    assert to_proto(edit.model, model).SerializeToString() == model.SerializeToString()


def test_a_constant_whose_reader_cannot_anchor_is_refused_before_anything_changes(tiny):
    """A folded constant read by an unnamed node (a graph handed to `repair_pass` as it is):
    the rule used to rewire the readers, then decline on the unnamed one."""
    model = onnx.load(str(tiny("position-ids-int")))
    findings = [f for f in check(model).findings if f.kind == "folded-constant"]
    assert findings, "expected the folded position ids"
    tensors = {f.tensor for f in findings}
    for node in model.graph.node:
        if tensors & set(node.input):
            node.name = ""
    before = model.SerializeToString()
    result = _pass(model, findings, dummy=None)
    assert not result.changes and len(result.refusals) == len(findings)
    assert all("no name" in r.reason for r in result.refusals), result.refusals
    assert result.model.SerializeToString() == before


def test_the_start_of_the_graph_is_no_name_an_unnamed_node_has():
    """A constant nothing reads is rebuilt at the start of the graph; an unnamed node
    used to share the start's name "", and got the same nodes inserted before it."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    unread = numpy_helper.from_array(np.array([2, 8], np.int64), "unread")
    nodes = [helper.make_node("Identity", ["x"], ["y"])]  # unnamed
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [unread]),
                              opset_imports=[helper.make_opsetid("", 17)])
    frozen = (FrozenValue(0, 2, "batch", "2 = export batch", Expr.of("batch").sympy),
              FrozenValue(1, 8, "sequence", "8 = export sequence", Expr.of("sequence").sympy))
    finding = Finding("folded-constant", "unread", "", frozen, "made up", tensor="unread")
    result = _pass(model, [finding], dummy={"batch": 2, "sequence": 8})
    assert len(result.changes) == 1, result.refusals
    produced = [o for n in result.model.graph.node for o in n.output]
    assert len(produced) == len(set(produced)), [n.op_type for n in result.model.graph.node]
    assert [n.op_type for n in result.model.graph.node][-1] == "Identity"


def test_two_nodes_with_one_name_are_refused_as_an_ambiguous_anchor():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence"])
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in "yz"]
    constants = [numpy_helper.from_array(np.array(v, np.int64), n)
                 for n, v in [("target", [2, 8, 1]), ("flat", [-1])]]
    nodes = [
        helper.make_node("Reshape", ["x", "target"], ["y"], name="twice"),
        helper.make_node("Reshape", ["x", "flat"], ["z"], name="twice"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outputs, constants),
                              opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pytorch")
    report = repair(model, dummy={"batch": 2, "sequence": 8}, dry_run=True)
    assert not report.changes
    (refusal,) = report.refusals
    assert "2 nodes are named 'twice'" in refusal.reason, refusal.reason
    assert report.repaired.SerializeToString() == model.SerializeToString()


def test_a_released_constant_a_subgraph_still_reads_is_kept():
    """Rewiring stops at the graph's own readers (what replaces the constant is built before
    the first of them); a reader inside an `If` branch keeps it, so it is no orphan."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence"])
    flag = helper.make_tensor_value_info("flag", onnx.TensorProto.BOOL, [])
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in "yz"]
    frozen = numpy_helper.from_array(np.array([2, 8], np.int64), "frozen")
    one = numpy_helper.from_array(np.array([1.0], np.float32), "one")
    branch_out = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, None)
    branch = helper.make_graph([helper.make_node("Expand", ["one", "frozen"], ["b"], name="inner")],
                               "branch", [], [branch_out])
    nodes = [
        helper.make_node("Expand", ["one", "frozen"], ["y"], name="frozen_expand"),
        helper.make_node("If", ["flag"], ["z"], name="if", then_branch=branch, else_branch=branch),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, flag], outputs, [frozen, one]),
                              opset_imports=[helper.make_opsetid("", 17)])
    batch = SymbolInfo("batch", "batch", "x", 0, 2)
    edit = GraphEdit(ir.from_proto(model), {}, {"batch": batch},
                     LoadedModel(model, None, "inline").read_tensor)

    def rule(edit: GraphEdit, finding: Finding, index: int):
        new = vector(edit, [Expr.of("batch"), 8], "frozen_expand")
        readers = edit.replace_everywhere("frozen", new)
        return [node.name for node in readers]

    finding = Finding("folded-constant", "frozen", "", (), "made up", tensor="frozen")
    assert edit.attempt(rule, finding, 0) == ["frozen_expand"]
    edit.finish()
    repaired = to_proto(edit.model, model)
    assert "frozen" in {t.name for t in repaired.graph.initializer}
    assert repaired.graph.node[-2].input[1] != "frozen"  # the graph's own reader is rewired
    inner = repaired.graph.node[-1].attribute[0].g.node[0]
    assert list(inner.input) == ["one", "frozen"]
    assert [n.op_type for n in repaired.graph.node][:3] == ["Shape", "Gather", "Concat"]
