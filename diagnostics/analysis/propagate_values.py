"""Propagation rules for the ops that compute small integer values: Constant, Shape, Size,
arithmetic, Range and ConstantOfShape.

Shape tensors carry their values through these, so `Shape -> Gather -> Concat` chains
keep their symbols; arithmetic on sizes stays exact (`shape_algebra`), and a sum or an
integer division a monomial cannot write becomes an exact derived size (`dims.Derived`).
"""

from __future__ import annotations

from math import prod

import onnx
from onnx import numpy_helper

from ..limits import MAX_RANK, MAX_VALUES
from .dims import ONE, UNKNOWN, Dim, floor_div, lit
from .propagate_common import attr, sum_of, with_origin
from .state import INT_TYPES, SymbolState


def propagate_same(it: SymbolState, node: onnx.NodeProto) -> None:
    it.shapes[node.output[0]] = it.shape(node.input[0])
    values = it.value(node.input[0])
    if values is not None:
        it.values[node.output[0]] = values


def propagate_cast(it: SymbolState, node: onnx.NodeProto) -> None:
    propagate_same(it, node)


def propagate_constant(it: SymbolState, node: onnx.NodeProto) -> None:
    tensor = next((a.t for a in node.attribute if a.name == "value"), None)
    if isinstance(tensor, onnx.TensorProto):
        it.add_constant(node.output[0], list(tensor.dims), tensor)
        return
    for name in ("value_int", "value_float"):
        if attr(node, name) is not None:
            it.add_constant(node.output[0], [], None)
            if name == "value_int":
                it.values[node.output[0]] = [lit(int(attr(node, name)))]
            return
    ints = next((a.ints for a in node.attribute if a.name == "value_ints"), None)
    if ints is not None and len(ints) > MAX_VALUES:  # data, not a shape: its length only
        it.add_constant(node.output[0], [len(ints)], None)
        return
    if ints is not None:
        it.add_constant(node.output[0], [len(ints)], None)
        it.values[node.output[0]] = [lit(int(v)) for v in ints]
        return
    it.shapes[node.output[0]] = None


def propagate_shape(it: SymbolState, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if shape is None:
        it.shapes[node.output[0]] = [UNKNOWN]
        return
    start = int(attr(node, "start", 0))
    end = attr(node, "end")
    dims = shape[start : None if end is None else int(end)]
    it.shapes[node.output[0]] = [lit(len(dims))]
    it.values[node.output[0]] = list(dims)


def propagate_size(it: SymbolState, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    it.shapes[node.output[0]] = []
    if shape is not None and all(d.expr is not None for d in shape):
        it.values[node.output[0]] = [Dim(prod((d.expr for d in shape), start=ONE))]


def propagate_elementwise(it: SymbolState, node: onnx.NodeProto) -> None:
    shapes = [it.shape(name) for name in node.input if name]
    it.shapes[node.output[0]] = it.broadcast(node, shapes)
    values = [it.value(name) for name in node.input if name]
    if any(v is None for v in values):
        return
    length = max(len(v) for v in values)
    if any(len(v) not in (1, length) for v in values):
        return
    rows = [[v[0]] * length if len(v) == 1 else v for v in values]
    result = [_arith(node.op_type, [row[i] for row in rows], it) for i in range(length)]
    if all(r is not None for r in result):
        it.values[node.output[0]] = result


def _arith(op: str, args: list[Dim], it: SymbolState | None = None) -> Dim | None:
    exprs = [a.expr for a in args]
    if any(e is None for e in exprs):
        return UNKNOWN
    a = exprs[0]
    b = exprs[1] if len(exprs) > 1 else None
    if op == "Mul" and b is not None:
        if b.literal == 1 or a.literal == 1:
            return args[0] if b.literal == 1 else args[1]
        return Dim(a * b)
    if op == "Div" and b is not None:
        if b.coef == 0:
            return UNKNOWN
        quotient = a / b
        if quotient.valid or quotient.literal is not None:
            return Dim(quotient)
        if it is not None and a.powers and b.literal is not None and b.literal > 0:
            # integer division of a size: height // patch
            return it.derive(floor_div(a.sympy, b.literal), parts=[a])
        return UNKNOWN
    if op in ("Add", "Sub") and b is not None:
        if b.literal == 0:
            return args[0]
        if a.literal == 0 and op == "Add":
            return args[1]
        if a.literal is not None and b.literal is not None:
            return lit(a.literal + b.literal if op == "Add" else a.literal - b.literal)
        if it is not None:  # past + sequence, samples // 10 - 1
            return sum_of(it, args, [1, 1 if op == "Add" else -1])
        return UNKNOWN
    if op == "Equal" and b is not None:
        if a == b:
            return lit(1)
        if a.literal is not None and b.literal is not None:
            return lit(0)
        if (a.literal is not None and a.literal <= 0) or (b.literal is not None and b.literal <= 0):
            return lit(0)  # symbols are positive sizes
        return UNKNOWN
    if op == "Where" and len(exprs) == 3:
        cond = a.literal
        return UNKNOWN if cond is None else (args[1] if cond else args[2])
    if op in ("Max", "Min") and b is not None and a.literal is not None and b.literal is not None:
        return lit(max(a.literal, b.literal) if op == "Max" else min(a.literal, b.literal))
    return UNKNOWN


def propagate_range(it: SymbolState, node: onnx.NodeProto) -> None:
    start, limit, delta = (it.value(name) for name in node.input[:3])
    it.shapes[node.output[0]] = [UNKNOWN]
    if start is None or limit is None or delta is None:
        return
    s, lim, d = start[0], limit[0], delta[0]
    if s.literal is not None and lim.literal is not None and d.literal:
        count = max(0, -(-(lim.literal - s.literal) // d.literal))
        it.shapes[node.output[0]] = [with_origin(node, 1, 0, lit(count))]
    elif s.literal == 0 and d.literal == 1 and lim.expr is not None:
        it.shapes[node.output[0]] = [Dim(lim.expr)]


def propagate_constant_of_shape(it: SymbolState, node: onnx.NodeProto) -> None:
    values = it.value(node.input[0])
    if values is None:
        length = it.shape(node.input[0])
        known = (length is not None and len(length) == 1 and length[0].literal is not None
                 and 0 <= length[0].literal <= MAX_RANK)
        it.shapes[node.output[0]] = [UNKNOWN] * length[0].literal if known else None
        return
    it.shapes[node.output[0]] = [with_origin(node, 0, i, v) for i, v in enumerate(values)]
    tensor = attr(node, "value")
    literal = [v.literal for v in values]
    if (
        isinstance(tensor, onnx.TensorProto)
        and tensor.data_type in INT_TYPES
        and len(literal) == 1
        and literal[0] is not None
        and literal[0] <= MAX_VALUES
    ):
        fill = int(numpy_helper.to_array(tensor).reshape(-1)[0])
        it.values[node.output[0]] = [lit(fill)] * literal[0]
