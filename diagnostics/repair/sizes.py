"""Repair literal sizes fed to Slice, Resize, Expand, Tile, ConstantOfShape and Range.

Pattern: a `frozen-shape` finding whose frozen values sit in a constant shape-like
input of the node. Check: the input is a literal vector (or scalar) and every
frozen element names the symbol it should be. Rewrite: that input rebuilt with the
frozen elements computed from `Shape` of the tensor that carries the axis (the
node's data for Slice and Resize, else the graph input that defines the symbol).
"""

from __future__ import annotations

from ..findings import Finding
from .edit import Declined, GraphEdit, inputs
from .results import Change
from .size_nodes import rebuilt_sizes, vector_text

OPS = ("Slice", "Resize", "Expand", "Tile", "ConstantOfShape", "Range")
_DATA_CARRIES_AXIS = ("Slice", "Resize")


def repair_sizes(edit: GraphEdit, finding: Finding, index: int) -> Change | Declined:
    node = edit.node(finding.node)
    if isinstance(node, Declined):
        return node
    if finding.input_index is None or finding.input_index >= len(node.inputs):
        return Declined("the finding names no input of the node")
    tensor = inputs(node)[finding.input_index]
    values = edit.constant(tensor)
    if values is None:
        return Declined(f"{tensor!r} is computed, not a literal: its source is not proved")
    if values.ndim > 1 or values.dtype.kind not in "iu":
        return Declined(f"{tensor!r} is not an integer vector or scalar")
    data = inputs(node)[0] if node.op_type in _DATA_CARRIES_AXIS else None
    rebuilt = rebuilt_sizes(edit, finding, values, node.name, data=data)
    if isinstance(rebuilt, Declined):
        return rebuilt
    name, literal, new = rebuilt
    edit.set_input(node, finding.input_index, name)
    edit.release(tensor)
    before, after = vector_text(literal), vector_text(new)
    action = f"input {finding.input_index} rebuilt from Shape"
    edit.note(node, f"input {finding.input_index} {before} -> {after} (computed from Shape)")
    return Change(index, node.name, node.op_type, action, before, after, edit.added())

