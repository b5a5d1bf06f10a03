"""What the propagation rules share: a node's attributes and inputs, and two ways to make a size.

`with_origin` keeps where a literal came from (the node and input that hold it), so a
frozen value found downstream names the node to fix; `sum_of` turns a sum of sizes that
are not all literal into an exact derived size of the state (`SymbolState.derive`).
"""

from __future__ import annotations

import onnx
import sympy

from .dims import UNKNOWN, Dim, Origin
from .state import SymbolState


def attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The node's attribute `name` as a Python value, or `default`."""
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def input_at(node: onnx.NodeProto, index: int) -> str:
    """The node's input at `index`; "" where it is left out."""
    return node.input[index] if len(node.input) > index else ""


def read_axes(it: SymbolState, node: onnx.NodeProto, index: int = 1) -> list[int] | None:
    """Axes from the attribute (old opsets) or the given input (new ones)."""
    axes = attr(node, "axes")
    if axes is not None:
        return list(axes)
    name = input_at(node, index)
    return it.literal_values(name) if name else None


def with_origin(node: onnx.NodeProto, index: int, position: int, value: Dim) -> Dim:
    """A dim taken from a shape-like input: keep its origin, or mark it born at this node."""
    if value.expr is None or value.symbolic or value.origins:
        return value
    origin = Origin(node.name, node.op_type, index, position, node.input[index], False)
    return Dim(value.expr, (origin,))


def sum_of(it: SymbolState, dims: list[Dim], signs: list[int] | None = None) -> Dim:
    """`a + b` of sizes that are not all literal: their exact sum (`SymbolState.derive`)."""
    if any(d.expr is None for d in dims):
        return UNKNOWN
    signs = signs or [1] * len(dims)
    exprs = [d.expr for d in dims]
    value = sympy.Add(*(s * e.sympy for s, e in zip(signs, exprs, strict=True)))
    return it.derive(value, parts=exprs)
