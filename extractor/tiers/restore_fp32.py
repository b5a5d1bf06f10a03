"""Leave named nodes of a QDQ int8 model unquantized by a graph edit, not a new quantization.

The rule is onnxruntime's `quantize_static` (QDQ) with those nodes left out of
`nodes_to_quantize`: a tensor is quantized while any quantized node reads it, and then
every reader reads its DequantizeLinear output. So a kept node reads its float weight
again (taken from the source: the QDQ file holds only the int8 copy), and an activation
no quantized node reads any more goes back to float for all its readers (residual Adds,
Shapes, other kept nodes); Q/DQ nodes and initializers nobody reads go. One load and save
instead of re-quantizing every weight; tests/extractor/test_static_int8.py compares the
two. Ours because onnxruntime offers no such edit.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import onnx_ir as ir

from .quantize import is_large


def restore_fp32(quantized: Path, source: Path, target: Path, names: Iterable[str]) -> Path:
    """Write `quantized` to `target` with the nodes `names` no longer quantized.

    Args:
        quantized: the QDQ model with every candidate quantized.
        source: the float model `quantized` was made from (the same node names).
        names: nodes to leave in fp32; one that reads no dequantized weight is left as it is.
    """
    model = ir.load(quantized)
    graph = model.graph
    floats = {node.name: node for node in ir.load(source).graph}
    kept = set(names)
    activations: list[ir.Node] = []
    dropped: list[ir.Node] = []
    for node in graph:
        if node.name not in kept or not _reads_quantized_weight(node):
            continue
        for index, value in enumerate(node.inputs):
            dequantize = _dequantize(value)
            if dequantize is None:
                continue
            if dequantize.inputs[0].is_initializer():
                node.replace_input_with(index, _initializer(graph, floats[node.name].inputs[index]))
                dropped.append(dequantize)
            else:
                activations.append(dequantize)
    for dequantize in dict.fromkeys(activations):
        quantize = dequantize.inputs[0].producer()
        readers = {usage.node for usage in dequantize.outputs[0].uses()}
        if (quantize is not None and quantize.op_type == "QuantizeLinear"
                and not any(map(_reads_quantized_weight, readers))):
            dequantize.outputs[0].replace_all_uses_with(quantize.inputs[0])
            dropped.append(dequantize)
    _remove_unread(graph, dropped)
    # No `drop_shape_annotations` pass: `quantized` has no intermediate shapes, and the
    # value_info onnx-ir writes for initializers leaves onnxruntime's fusions as they were.
    ir.save(model, target, external_data=target.name + ".data" if is_large(quantized) else None)
    return target


def _dequantize(value: ir.Value | None) -> ir.Node | None:
    producer = value.producer() if value is not None else None
    return producer if producer is not None and producer.op_type == "DequantizeLinear" else None


def _reads_quantized_weight(node: ir.Node) -> bool:
    """Whether `node` is quantized: with weights only on MatMuls, a quantized node is one
    that reads a dequantized initializer."""
    return any((dequantize := _dequantize(value)) is not None
               and dequantize.inputs[0].is_initializer() for value in node.inputs)


def _initializer(graph: ir.Graph, original: ir.Value) -> ir.Value:
    """`original` (an initializer of another graph) as an initializer of `graph`, once."""
    if original.name in graph.initializers:
        return graph.initializers[original.name]
    value = ir.Value(name=original.name, type=original.type, shape=original.shape,
                     const_value=original.const_value)
    graph.register_initializer(value)
    return value


def _remove_unread(graph: ir.Graph, dequantizes: list[ir.Node]) -> None:
    """Remove the DequantizeLinear nodes nothing reads now, then their QuantizeLinear
    and initializers when those have no other reader (scales shared with a Q stay)."""
    for dequantize in dict.fromkeys(dequantizes):
        if dequantize.outputs[0].uses() or dequantize.outputs[0].is_graph_output():
            continue
        inputs = list(dequantize.inputs)
        graph.remove(dequantize, safe=True)
        quantize = inputs[0].producer()
        if quantize is not None and not inputs[0].uses() and not inputs[0].is_graph_output():
            inputs.extend(quantize.inputs[1:])
            graph.remove(quantize, safe=True)
        for value in dict.fromkeys(inputs):
            if value is not None and value.is_initializer() and not value.uses():
                graph.initializers.pop(value.name)
