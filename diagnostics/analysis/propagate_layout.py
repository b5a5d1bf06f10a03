"""Propagation rules for the ops that move axes: Gather, (Un)Squeeze, Concat, Slice,
Transpose, Flatten, Split, Expand, Tile and Reshape.

A literal that cuts or fills a symbolic axis keeps its origin (`with_origin`), so the
frozen-shape rules (`frozen`) can name the node and input that hold it.
"""

from __future__ import annotations

from math import prod

import onnx

from ..limits import MAX_RANK
from .dims import ONE, UNKNOWN, Dim, Origin, Shape, lit
from .propagate_common import attr, input_at, read_axes, sum_of, with_origin
from .state import SymbolState

_BIG = 10**9  # Slice ends at or past this mean "to the end" (tf2onnx writes 1e9)


def propagate_gather(it: SymbolState, node: onnx.NodeProto) -> None:
    data, indices = it.shape(node.input[0]), it.shape(node.input[1])
    axis = int(attr(node, "axis", 0))
    if data is None or indices is None:
        it.shapes[node.output[0]] = None
        return
    axis %= max(len(data), 1)
    it.shapes[node.output[0]] = data[:axis] + indices + data[axis + 1 :]
    values, picks = it.value(node.input[0]), it.literal_values(node.input[1])
    if values is not None and picks is not None and len(data) == 1:
        try:
            it.values[node.output[0]] = [values[p] for p in picks]
        except IndexError:
            pass


def propagate_gather_nd(it: SymbolState, node: onnx.NodeProto) -> None:
    data, indices = it.shape(node.input[0]), it.shape(node.input[1])
    batch = int(attr(node, "batch_dims", 0))
    if data is None or indices is None or not indices or indices[-1].literal is None:
        it.shapes[node.output[0]] = None
        return
    it.shapes[node.output[0]] = indices[:-1] + data[batch + indices[-1].literal :]


def propagate_unsqueeze(it: SymbolState, node: onnx.NodeProto) -> None:
    shape, axes = it.shape(node.input[0]), read_axes(it, node)
    values = it.value(node.input[0])
    if values is not None:
        it.values[node.output[0]] = values
    if shape is None or axes is None:
        it.shapes[node.output[0]] = None
        return
    rank = len(shape) + len(axes)
    out: list[Dim] = list(shape)
    for axis in sorted(a % rank for a in axes):
        out.insert(axis, lit(1))
    it.shapes[node.output[0]] = out


def propagate_squeeze(it: SymbolState, node: onnx.NodeProto) -> None:
    shape, axes = it.shape(node.input[0]), read_axes(it, node)
    values = it.value(node.input[0])
    if values is not None:
        it.values[node.output[0]] = values
    if shape is None:
        it.shapes[node.output[0]] = None
        return
    if axes is None:
        if any(d.expr is None for d in shape):
            it.shapes[node.output[0]] = None
            return
        it.shapes[node.output[0]] = [d for d in shape if d.literal != 1]
        return
    drop = {a % len(shape) for a in axes}
    it.shapes[node.output[0]] = [d for i, d in enumerate(shape) if i not in drop]


def propagate_concat(it: SymbolState, node: onnx.NodeProto) -> None:
    shapes = [it.shape(name) for name in node.input]
    values = [it.value(name) for name in node.input]
    if all(v is not None for v in values):
        it.values[node.output[0]] = [d for v in values for d in v]
    if any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        it.shapes[node.output[0]] = None
        return
    rank = len(shapes[0])
    axis = int(attr(node, "axis", 0)) % rank
    out = []
    for i in range(rank):
        dims = [s[i] for s in shapes]
        if i != axis:
            out.append(it.unify(node, dims, broadcast=False))
        elif all(d.literal is not None for d in dims):
            out.append(lit(sum(d.literal for d in dims)))
        else:
            nonzero = [d for d in dims if d.literal != 0]
            out.append(nonzero[0] if len(nonzero) == 1 else sum_of(it, nonzero))
    it.shapes[node.output[0]] = out


def propagate_slice(it: SymbolState, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if node.attribute:  # opset < 10 keeps them as attributes
        starts, ends = attr(node, "starts"), attr(node, "ends")
        axes, steps = attr(node, "axes"), None
    else:
        starts, ends = it.literal_values(node.input[1]), it.literal_values(node.input[2])
        axes = it.literal_values(input_at(node, 3)) if input_at(node, 3) else None
        steps = it.literal_values(input_at(node, 4)) if input_at(node, 4) else None
        symbolic_ends = it.value(node.input[2])
        if ends is None and starts is not None and symbolic_ends is not None and shape is not None:
            _slice_to_symbol(it, node, shape, starts, symbolic_ends, axes, steps)
            return
    if shape is None:
        it.shapes[node.output[0]] = None
        return
    if starts is None or ends is None or (input_at(node, 3) and axes is None):
        it.shapes[node.output[0]] = [UNKNOWN] * len(shape)
        return
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = list(steps) if steps is not None else [1] * len(starts)
    out = list(shape)
    for position, (axis, start, end, step) in enumerate(
        zip(axes, starts, ends, steps, strict=False)
    ):
        axis %= len(shape)
        out[axis] = _slice_dim(node, shape[axis], start, end, step, position)
    it.shapes[node.output[0]] = out
    values = it.value(node.input[0])
    if values is not None and len(shape) == 1 and all(v.expr is not None for v in values):
        it.values[node.output[0]] = values[slice(starts[0], ends[0], steps[0])]


def _slice_to_symbol(
    it: SymbolState,
    node: onnx.NodeProto,
    shape: list[Dim],
    starts: list[int],
    ends: list[Dim],
    axes: list[int] | None,
    steps: list[int] | None,
) -> None:
    """`x[..., :n]` with a computed n: the axis becomes n (it cannot exceed the axis)."""
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    out = list(shape)
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=False):
        known = start == 0 and step == 1 and end.expr is not None and end.expr.valid
        table = shape[axis % len(shape)].literal
        name = end.expr.single if known else None
        if name is not None and table is not None:  # a table of `table` rows cut at n: n <= it
            it.limits[name] = min(it.limits.get(name, table), table)
        out[axis % len(shape)] = Dim(end.expr) if known else UNKNOWN
    it.shapes[node.output[0]] = out


def _slice_dim(
    node: onnx.NodeProto, dim: Dim, start: int, end: int, step: int, position: int
) -> Dim:
    born = Origin(
        node.name, node.op_type, 2, position, node.input[2] if len(node.input) > 2 else "", False
    )
    if step == 1 and start == 0 and end >= _BIG:
        return dim
    if dim.literal is not None:
        size = dim.literal
        begin, stop, _ = slice(start, end, step).indices(size)
        length = max(0, -(-(stop - begin) // step)) if step > 0 else len(range(begin, stop, step))
        return dim if length == size else lit(length, born)
    if step == 1 and start >= 0 and 0 <= end < _BIG:
        return lit(end - start, born)  # a literal cut of a symbolic axis: the rule judges it
    if step == 1 and start < 0 and end >= _BIG:
        return lit(-start, born)
    return UNKNOWN


def propagate_transpose(it: SymbolState, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if shape is None:
        it.shapes[node.output[0]] = None
        return
    perm = attr(node, "perm") or list(reversed(range(len(shape))))
    it.shapes[node.output[0]] = [shape[p] for p in perm]


def propagate_flatten(it: SymbolState, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if shape is None or any(d.expr is None for d in shape):
        it.shapes[node.output[0]] = [UNKNOWN, UNKNOWN]
        return
    axis = int(attr(node, "axis", 1)) % (len(shape) + 1)
    head = prod((d.expr for d in shape[:axis]), start=ONE)
    tail = prod((d.expr for d in shape[axis:]), start=ONE)
    it.shapes[node.output[0]] = [Dim(head), Dim(tail)]


def propagate_split(it: SymbolState, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    axis = int(attr(node, "axis", 0))
    sizes = attr(node, "split")
    if sizes is None and input_at(node, 1):
        sizes = it.literal_values(node.input[1])
    if sizes is None and shape is not None:  # equal parts (opset 18: num_outputs)
        whole = shape[axis % len(shape)].literal
        parts = len(node.output)
        if whole is not None and parts:
            step = -(-whole // parts)
            sizes = [min(step, whole - step * i) for i in range(parts)]
    for i, name in enumerate(node.output):
        if shape is None:
            it.shapes[name] = None
            continue
        out = list(shape)
        out[axis % len(shape)] = lit(sizes[i]) if sizes else UNKNOWN
        it.shapes[name] = out


def propagate_expand(it: SymbolState, node: onnx.NodeProto) -> None:
    data, target = it.shape(node.input[0]), it.value(node.input[1])
    if target is None:
        it.shapes[node.output[0]] = None
        return
    target = [
        # -1 in an Expand shape is not ONNX, but 1 keeps the data dim: the same
        lit(1) if t.literal == 1 else with_origin(node, 1, i, t)
        for i, t in enumerate(target)
    ]
    it.shapes[node.output[0]] = it.broadcast(node, [data, target])


def propagate_tile(it: SymbolState, node: onnx.NodeProto) -> None:
    data, repeats = it.shape(node.input[0]), it.value(node.input[1])
    if data is None or repeats is None or len(repeats) != len(data):
        it.shapes[node.output[0]] = None
        return
    out = []
    for i, (dim, repeat) in enumerate(zip(data, repeats, strict=True)):
        if repeat.literal == 1:
            out.append(dim)
        elif dim.expr is None or repeat.expr is None:
            out.append(UNKNOWN)
        elif dim.literal == 1:
            out.append(with_origin(node, 1, i, repeat))
        else:
            out.append(Dim(dim.expr * repeat.expr))
    it.shapes[node.output[0]] = out


def propagate_reshape(it: SymbolState, node: onnx.NodeProto) -> None:
    out = reshape_output(it.shape(node.input[0]), it.value(node.input[1]), node)
    target = it.shape(node.input[1])
    if (out is None and target and len(target) == 1 and target[0].literal is not None
            and 0 <= target[0].literal <= MAX_RANK):
        out = [UNKNOWN] * target[0].literal  # a computed target: its rank is known
    it.shapes[node.output[0]] = out
    values = it.value(node.input[0])
    if values is not None and out is not None and len(out) <= 1:
        it.values[node.output[0]] = values  # a shape tensor flattened: same elements


def reshape_output(data: Shape, target: list[Dim] | None, node: onnx.NodeProto) -> Shape:
    """Reshape's output; a -1 that does not divide evenly gives an unknown dim."""
    if target is None:
        return None
    out: list[Dim] = []
    for i, t in enumerate(target):
        if t.literal == 0 and not int(attr(node, "allowzero", 0)):
            out.append(data[i] if data is not None and i < len(data) else UNKNOWN)
        else:
            out.append(with_origin(node, 1, i, t) if t.literal != -1 else t)
    holes = [i for i, d in enumerate(out) if d.literal == -1]
    if not holes:
        return out
    known = [d.expr for i, d in enumerate(out) if i not in holes]
    if len(holes) > 1 or data is None or any(d.expr is None for d in data) or None in known:
        return [UNKNOWN if d.literal == -1 else d for d in out]
    numel, rest = prod((d.expr for d in data), start=ONE), prod(known, start=ONE)
    inferred = numel / rest if rest.coef else None
    out[holes[0]] = Dim(inferred) if inferred is not None and inferred.valid else UNKNOWN
    return out
