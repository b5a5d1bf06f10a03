"""The suggested repair Netron shows is computed from the exact size, sums included."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from diagnostics import check
from diagnostics.view.annotate import suggest_repair


def test_a_frozen_sum_is_suggested_as_the_sum_of_the_inputs_sizes():
    past = helper.make_tensor_value_info("past", onnx.TensorProto.FLOAT, ["batch", "past", 4])
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    target = numpy_helper.from_array(np.array([2, 11, 4], np.int64), "target")
    nodes = [helper.make_node("Concat", ["past", "x"], ["joined"], axis=1, name="cat"),
             helper.make_node("Reshape", ["joined", "target"], ["y"], name="reshape")]
    model = helper.make_model(helper.make_graph(nodes, "g", [past, x], [y], [target]),
                              opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pytorch")
    report = check(model, dummy={"batch": 2, "past": 5, "sequence": 6})
    (finding,) = report.findings
    assert suggest_repair(finding, report.symbols) == (
        "replace in input 1 (target): [0] 2 -> batch = Shape(past)[0], "
        "[1] 11 -> (past + sequence) = Shape(past)[1] + Shape(x)[1]; "
        "or run `python -m diagnostics repair`")
