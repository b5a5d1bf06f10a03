"""Output shapes of one node from onnx's own shape inference, given the shapes we hold.

For every standard op without a rule of ours (BatchNormalization, Pad, Einsum,
TopK, LSTM, ...): a one-node model whose inputs carry our dims (a symbol as the
dim_param spelling it, small integer values and small constants as initializers)
goes through `onnx.shape_inference.infer_shapes` (strict, with data propagation).
An output dim that comes back as one of the inputs' dim_params is that symbol
again; a literal is a literal; a dim onnx names anew is unknown. Control flow
(If, Loop, Scan) and ops of other domains are not followed: their outputs stay
unknown and the op is named in the report. Measured on the corpus this beat
running inference over the whole graph: the graph's own inference sees a static
input's dummy sizes where our analysis sees the symbols they should have been.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..limits import product
from .dims import UNKNOWN, Dim, lit
from .state import SymbolState

NOT_FOLLOWED = {"If", "Loop", "Scan", "SequenceMap"}
_SMALL = 64  # constants up to this many elements go in as values (Resize scales, Pad pads)
_GRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def infer_node(it: SymbolState, node: onnx.NodeProto) -> bool:
    """Set the node's output shapes from onnx's inference; False when it cannot tell."""
    if (node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLLOWED
            or any(a.type in _GRAPH_ATTRIBUTES for a in node.attribute) or it.model is None):
        return False
    types = element_types(it)
    by_text: dict[str, Dim] = {}
    inputs, initializers = [], []
    for name in dict.fromkeys(n for n in node.input if n):
        elem = types.get(name)
        if not elem:
            return False
        constant = _constant_value(it, name, elem)
        if constant is not None:
            initializers.append(numpy_helper.from_array(constant, name))
            continue
        shape = it.shape(name)
        if shape is None:
            inputs.append(helper.make_tensor_value_info(name, elem, None))
            continue
        dims = []
        for dim in shape:
            if dim.literal is not None:
                dims.append(dim.literal)
            elif dim.expr is not None:
                by_text[str(dim.expr)] = dim
                dims.append(str(dim.expr))
            else:
                dims.append(None)
        inputs.append(helper.make_tensor_value_info(name, elem, dims))
    outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    graph = helper.make_graph([node], "node", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=it.model.opset_import,
                              ir_version=it.model.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception:  # onnx raises its own error types, and ValueError/RuntimeError
        return False
    found = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    known = False
    for name in node.output:
        info = found.get(name)
        if not name or info is None or not info.type.tensor_type.HasField("shape"):
            it.shapes[name] = None
            continue
        known = True
        it.shapes[name] = [
            lit(d.dim_value) if d.HasField("dim_value")
            else by_text.get(d.dim_param, UNKNOWN)
            for d in info.type.tensor_type.shape.dim
        ]
    return known


def element_types(it: SymbolState) -> dict[str, int]:
    """Every value's element type, from onnx's type inference over the whole model (once)."""
    if it.types is not None:
        return it.types
    model = it.model
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model over 2 GB in memory, or one onnx cannot type: what is declared
        pass
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*graph.input, *graph.value_info, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    types[node.output[0]] = attribute.t.data_type
    it.types = types
    return types


def _constant_value(it: SymbolState, name: str, elem: int) -> np.ndarray | None:
    """A small constant's value: integers we carry, or an initializer onnx needs (scales)."""
    values = it.literal_values(name)
    shape = it.shape(name)
    if values is not None and shape is not None and all(d.literal is not None for d in shape):
        dtype = helper.tensor_dtype_to_np_dtype(elem)
        return np.array(values, dtype=dtype).reshape([d.literal for d in shape])
    tensor = it.initializers.get(name)
    if tensor is not None and product(tensor.dims) <= _SMALL:  # never numpy's overflow
        return it.read_tensor(tensor)
    return None
