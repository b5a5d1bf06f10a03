from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from extractor.tiers.merge_projections import merge_projections

HIDDEN = 8


def _projections(biases: list[bool], opset: int = 17, shared_bias: bool = False
                 ) -> onnx.ModelProto:
    """x -> LayerNorm-free stand-in (Relu) -> one MatMul per entry (+ bias) -> graph outputs."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu")]
    inits, outputs = [], []
    for i, with_bias in enumerate(biases):
        width = HIDDEN + 4 * i  # different widths: the Split must cut them apart right
        inits.append(numpy_helper.from_array(rng.normal(size=(HIDDEN, width)).astype(np.float32),
                                             f"w{i}"))
        nodes.append(helper.make_node("MatMul", ["h", f"w{i}"], [f"mm{i}"], name=f"proj{i}"))
        out = f"mm{i}"
        if with_bias:
            bias = rng.normal(size=width).astype(np.float32)
            if shared_bias and i > 0:
                # TorchScript names a shared tensor through an Identity node.
                nodes.append(helper.make_node("Identity", [f"b{i}_src"], [f"b{i}"]))
                inits.append(numpy_helper.from_array(bias, f"b{i}_src"))
            else:
                inits.append(numpy_helper.from_array(bias, f"b{i}"))
            nodes.append(helper.make_node("Add", [f"b{i}", out], [f"add{i}"], name=f"bias{i}"))
            out = f"add{i}"
        nodes.append(helper.make_node("Neg", [out], [f"y{i}"]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["b", "s", width]))
    graph = helper.make_graph(
        nodes, "projections",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", HIDDEN])],
        outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


@pytest.mark.parametrize(("biases", "opset", "shared"), [
    ([True, True, True], 17, False),   # query/key/value with biases, Split sizes as input
    ([True, True, True], 17, True),    # biases reached through Identity nodes
    ([False, False], 11, False),       # no biases, old opset: Split sizes as an attribute
])
def test_projections_of_one_input_become_one_matmul_with_the_same_outputs(biases, opset, shared):
    original = _projections(biases, opset, shared)
    merged = onnx.ModelProto()
    merged.CopyFrom(original)
    assert merge_projections(merged) == 1
    onnx.checker.check_model(merged, full_check=True)
    ops = [n.op_type for n in merged.graph.node]
    want = {"MatMul": 1, "Split": 1, "Add": 1 if biases[0] else 0, "Identity": 0}
    seen = {op: ops.count(op) for op in want}
    assert seen == want, f"expected {want} after the merge, saw {seen}: {ops}"
    # The old weights are gone, not kept beside the merged one.
    assert {t.name for t in merged.graph.initializer} & {"w0", "w1", "w2"} == set()
    x = np.random.default_rng(1).normal(size=(3, 5, HIDDEN)).astype(np.float32)
    for want, got in zip(_run(original, x), _run(merged, x), strict=True):
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_projections_mixing_bias_and_no_bias_are_left_alone():
    model = _projections([True, False])
    before = model.SerializeToString()
    assert merge_projections(model) == 0
    assert model.SerializeToString() == before


def test_a_single_projection_is_left_alone():
    model = _projections([True])
    assert merge_projections(model) == 0
