"""The Slice and Resize rules: literal sizes where the axis they cut or scale is symbolic.

A Slice end equal to the export size of the dynamic axis it cuts is a no-op frozen at
export; a Resize with literal `sizes` on axes whose input size is symbolic is frozen too.
"""

from __future__ import annotations

import onnx

from ..findings import Finding, FrozenValue, Skip
from .dims import UNKNOWN
from .frozen_common import Context, Verdict, dummy_size, explain
from .state import SymbolState


def slice_rule(it: SymbolState, node: onnx.NodeProto, context: Context) -> Verdict | Skip | None:
    """A literal end equal to the export size of the dynamic axis it cuts: a no-op frozen."""
    if node.attribute or len(node.input) < 3:
        return None
    data = it.shape(node.input[0])
    starts, ends = it.literal_values(node.input[1]), it.literal_values(node.input[2])
    axes = it.literal_values(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if data is None or starts is None or ends is None:
        return None
    axes = axes if axes is not None else list(range(len(starts)))
    frozen, output = [], list(data)
    for position, (axis, start, end) in enumerate(zip(axes, starts, ends, strict=False)):
        dim = data[axis % len(data)]
        if not dim.symbolic or start != 0 or end <= 1:
            continue
        if dummy_size(dim.expr, context) == end:
            frozen.append(
                FrozenValue(position, end, str(dim.expr), explain(end, dim.expr, context.dummy),
                            dim.expr.sympy)
            )
    if not frozen:
        return None
    for position, axis in enumerate(axes):
        if any(f.position == position for f in frozen):
            output[axis % len(data)] = data[axis % len(data)]
        else:
            output[axis % len(data)] = UNKNOWN
    reason = "a literal end cuts a dynamic axis at its export size"
    return Verdict(
        Finding(
            "frozen-shape",
            node.name,
            node.op_type,
            tuple(frozen),
            reason,
            input_index=2,
            tensor=node.input[2],
        ),
        output,
    )


def resize_rule(it: SymbolState, node: onnx.NodeProto, context: Context) -> Verdict | Skip | None:
    """Literal `sizes` on axes whose input size is symbolic."""
    if len(node.input) < 4 or not node.input[3]:
        return None
    data, sizes = it.shape(node.input[0]), it.value(node.input[3])
    if data is None or sizes is None or len(sizes) != len(data):
        return None
    frozen = [
        FrozenValue(i, s.literal, str(d.expr), explain(s.literal, d.expr, context.dummy),
                    d.expr.sympy)
        for i, (d, s) in enumerate(zip(data, sizes, strict=True))
        if d.symbolic and s.literal is not None
    ]
    if not frozen:
        return None
    output = [d if d.symbolic else s for d, s in zip(data, sizes, strict=True)]
    reason = "literal sizes on dynamic axes"
    return Verdict(
        Finding(
            "frozen-shape",
            node.name,
            node.op_type,
            tuple(frozen),
            reason,
            input_index=3,
            tensor=node.input[3],
        ),
        output,
    )
