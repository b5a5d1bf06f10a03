"""Merge the projections that read one tensor (query, key, value) into one MatMul.

Three MatMuls of the same input by constant weights, each plus a constant bias,
become one MatMul by the concatenated weights, one Add, and a Split along the last
axis. The arithmetic is the same; for dynamic int8 the input is quantized once
instead of three times and the GEMM is one wide one (bert-base int8: 1-4% faster).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class Projection:
    matmul: onnx.NodeProto
    weight: onnx.TensorProto
    add: onnx.NodeProto | None  # the bias Add, when there is one
    bias: onnx.TensorProto | None

    @property
    def output(self) -> str:
        return (self.add or self.matmul).output[0]


def merge_projections(model: onnx.ModelProto) -> int:
    """Rewrite `model` in place; returns how many groups of projections were merged."""
    graph = model.graph
    constants = _constants(graph)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    groups: dict[str, list[Projection]] = defaultdict(list)
    for node in graph.node:
        projection = _projection(node, constants, consumers)
        if projection is not None:
            groups[node.input[0]].append(projection)
    split_attribute = _opset(model) < 13
    replaced: dict[int, list[onnx.NodeProto]] = {}
    removed: set[int] = set()
    for source, members in groups.items():
        if _mergeable(members):
            first = members[0].matmul
            replaced[id(first)], initializers = _merged(source, members, split_attribute)
            graph.initializer.extend(initializers)
            removed.update(id(n) for p in members for n in (p.matmul, p.add) if n is not None)
    if not replaced:
        return 0
    nodes = []
    for node in graph.node:
        nodes.extend(replaced.get(id(node), []))
        if id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused(graph)
    return len(replaced)


def _projection(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto],
                consumers: dict[str, list[onnx.NodeProto]]) -> Projection | None:
    if node.op_type != "MatMul" or node.input[1] not in constants:
        return None
    weight = constants[node.input[1]]
    if len(weight.dims) != 2:
        return None
    after = consumers[node.output[0]]
    if len(after) == 1 and after[0].op_type == "Add":
        other = [name for name in after[0].input if name != node.output[0]]
        bias = constants.get(other[0]) if len(other) == 1 else None
        if (bias is not None and list(bias.dims) == [weight.dims[1]]
                and bias.data_type == weight.data_type):
            return Projection(node, weight, after[0], bias)
    return Projection(node, weight, None, None)


def _mergeable(members: list[Projection]) -> bool:
    """Two or more, of one dtype, all with a bias or all without."""
    return (len(members) > 1
            and len({p.weight.data_type for p in members}) == 1
            and len({p.weight.dims[0] for p in members}) == 1
            and len({p.bias is None for p in members}) == 1)


def _merged(source: str, members: list[Projection],
            split_attribute: bool) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    base = members[0].matmul.name or members[0].matmul.output[0]
    weight = numpy_helper.from_array(
        np.concatenate([numpy_helper.to_array(p.weight) for p in members], axis=1),
        base + "/merged.weight")
    sizes = [p.weight.dims[1] for p in members]
    nodes = [helper.make_node("MatMul", [source, weight.name], [base + "/merged"],
                              name=base + "/merged")]
    initializers = [weight]
    last = nodes[0].output[0]
    if members[0].bias is not None:
        bias = numpy_helper.from_array(
            np.concatenate([numpy_helper.to_array(p.bias) for p in members]),
            base + "/merged.bias")
        initializers.append(bias)
        nodes.append(helper.make_node("Add", [last, bias.name], [base + "/merged_bias"],
                                      name=base + "/merged_bias"))
        last = nodes[-1].output[0]
    outputs = [p.output for p in members]
    if split_attribute:
        split = helper.make_node("Split", [last], outputs, name=base + "/merged_split", axis=-1,
                                 split=sizes)
    else:
        counts = numpy_helper.from_array(np.array(sizes, dtype=np.int64), base + "/merged.split")
        initializers.append(counts)
        split = helper.make_node("Split", [last, counts.name], outputs,
                                 name=base + "/merged_split", axis=-1)
    nodes.append(split)
    return nodes, initializers


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers by name, also under the names Identity nodes give them (TorchScript
    shares one tensor among equal biases that way)."""
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove Identity nodes and initializers nothing reads any more."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in used]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
