"""One propagation rule per ONNX op: output shapes (and small integer values) from the inputs'.

A rule that cannot tell leaves the dim unknown; where dims must agree it goes through
`Interpreter.unify`, which records a literal meeting a symbol as a conflict.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import TYPE_CHECKING

import onnx
from onnx import numpy_helper

from .limits import MAX_RANK, product
from .shape_algebra import ONE, UNKNOWN, Dim, Origin, Shape, lit

if TYPE_CHECKING:
    from .symbols import Interpreter

_BIG = 10**9  # Slice ends at or past this mean "to the end" (tf2onnx writes 1e9)
MAX_VALUES = 64  # integer tensors up to this size carry their values
INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _axes(it: Interpreter, node: onnx.NodeProto, index: int = 1) -> list[int] | None:
    """Axes from the attribute (old opsets) or the given input (new ones)."""
    axes = _attr(node, "axes")
    if axes is not None:
        return list(axes)
    name = _input(node, index)
    return it.literal_values(name) if name else None


# -- handlers ----------------------------------------------------------------------------------


def _same(it: Interpreter, node: onnx.NodeProto) -> None:
    it.shapes[node.output[0]] = it.shape(node.input[0])
    values = it.value(node.input[0])
    if values is not None:
        it.values[node.output[0]] = values


def _constant(it: Interpreter, node: onnx.NodeProto) -> None:
    tensor = next((a.t for a in node.attribute if a.name == "value"), None)
    if isinstance(tensor, onnx.TensorProto):
        it._add_constant(node.output[0], list(tensor.dims), tensor)
        return
    for name in ("value_int", "value_float"):
        if _attr(node, name) is not None:
            it._add_constant(node.output[0], [], None)
            if name == "value_int":
                it.values[node.output[0]] = [lit(int(_attr(node, name)))]
            return
    ints = next((a.ints for a in node.attribute if a.name == "value_ints"), None)
    if ints is not None and len(ints) > MAX_VALUES:  # data, not a shape: its length only
        it._add_constant(node.output[0], [len(ints)], None)
        return
    if ints is not None:
        it._add_constant(node.output[0], [len(ints)], None)
        it.values[node.output[0]] = [lit(int(v)) for v in ints]
        return
    it.shapes[node.output[0]] = None


def _shape(it: Interpreter, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if shape is None:
        it.shapes[node.output[0]] = [UNKNOWN]
        return
    start = int(_attr(node, "start", 0))
    end = _attr(node, "end")
    dims = shape[start : None if end is None else int(end)]
    it.shapes[node.output[0]] = [lit(len(dims))]
    it.values[node.output[0]] = list(dims)


def _size(it: Interpreter, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    it.shapes[node.output[0]] = []
    if shape is not None and all(d.expr is not None for d in shape):
        it.values[node.output[0]] = [Dim(prod((d.expr for d in shape), start=ONE))]


def _elementwise(it: Interpreter, node: onnx.NodeProto) -> None:
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


def _arith(op: str, args: list[Dim], it: Interpreter | None = None) -> Dim | None:
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
            size = it.size_of(a)  # integer division of a size: height // patch
            divisor = b.literal
            return it.derive(f"floor({a}/{divisor})",
                             None if size is None else size // divisor,
                             lambda ev: ev(a) // divisor, parts=[a])
        return UNKNOWN
    if op in ("Add", "Sub") and b is not None:
        if b.literal == 0:
            return args[0]
        if a.literal == 0 and op == "Add":
            return args[1]
        if a.literal is not None and b.literal is not None:
            return lit(a.literal + b.literal if op == "Add" else a.literal - b.literal)
        if it is not None:  # past + sequence, samples // 10 - 1
            return _sum(it, args, [1, 1 if op == "Add" else -1])
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


def _cast(it: Interpreter, node: onnx.NodeProto) -> None:
    _same(it, node)


def _gather(it: Interpreter, node: onnx.NodeProto) -> None:
    data, indices = it.shape(node.input[0]), it.shape(node.input[1])
    axis = int(_attr(node, "axis", 0))
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


def _gather_nd(it: Interpreter, node: onnx.NodeProto) -> None:
    data, indices = it.shape(node.input[0]), it.shape(node.input[1])
    batch = int(_attr(node, "batch_dims", 0))
    if data is None or indices is None or not indices or indices[-1].literal is None:
        it.shapes[node.output[0]] = None
        return
    it.shapes[node.output[0]] = indices[:-1] + data[batch + indices[-1].literal :]


def _unsqueeze(it: Interpreter, node: onnx.NodeProto) -> None:
    shape, axes = it.shape(node.input[0]), _axes(it, node)
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


def _squeeze(it: Interpreter, node: onnx.NodeProto) -> None:
    shape, axes = it.shape(node.input[0]), _axes(it, node)
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


def _concat(it: Interpreter, node: onnx.NodeProto) -> None:
    shapes = [it.shape(name) for name in node.input]
    values = [it.value(name) for name in node.input]
    if all(v is not None for v in values):
        it.values[node.output[0]] = [d for v in values for d in v]
    if any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        it.shapes[node.output[0]] = None
        return
    rank = len(shapes[0])
    axis = int(_attr(node, "axis", 0)) % rank
    out = []
    for i in range(rank):
        dims = [s[i] for s in shapes]
        if i != axis:
            out.append(it.unify(node, dims, broadcast=False))
        elif all(d.literal is not None for d in dims):
            out.append(lit(sum(d.literal for d in dims)))
        else:
            nonzero = [d for d in dims if d.literal != 0]
            out.append(nonzero[0] if len(nonzero) == 1 else _sum(it, nonzero))
    it.shapes[node.output[0]] = out


def _sum(it: Interpreter, dims: list[Dim], signs: list[int] | None = None) -> Dim:
    """`a + b` of sizes that are not all literal: a derived symbol (its dummy summed too)."""
    if any(d.expr is None for d in dims):
        return UNKNOWN
    signs = signs or [1] * len(dims)
    literal = sum(s * d.literal for s, d in zip(signs, dims, strict=True) if d.literal is not None)
    terms = sorted(str(d.expr) for s, d in zip(signs, dims, strict=True) if d.literal is None
                   and s > 0)
    minus = sorted(str(d.expr) for s, d in zip(signs, dims, strict=True) if d.literal is None
                   and s < 0)
    text = " + ".join(terms) + "".join(f" - {t}" for t in minus)
    if literal:
        text += f" + {literal}" if literal > 0 else f" - {-literal}"
    sizes = [it.size_of(d.expr) for d in dims]
    size = None if None in sizes else sum(s * v for s, v in zip(signs, sizes, strict=True))
    exprs = [d.expr for d in dims]
    return it.derive(text, size, lambda ev: sum(
        s * ev(e) for s, e in zip(signs, exprs, strict=True)), parts=exprs)


def _slice(it: Interpreter, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if node.attribute:  # opset < 10 keeps them as attributes
        starts, ends = _attr(node, "starts"), _attr(node, "ends")
        axes, steps = _attr(node, "axes"), None
    else:
        starts, ends = it.literal_values(node.input[1]), it.literal_values(node.input[2])
        axes = it.literal_values(_input(node, 3)) if _input(node, 3) else None
        steps = it.literal_values(_input(node, 4)) if _input(node, 4) else None
        symbolic_ends = it.value(node.input[2])
        if ends is None and starts is not None and symbolic_ends is not None and shape is not None:
            _slice_to_symbol(it, node, shape, starts, symbolic_ends, axes, steps)
            return
    if shape is None:
        it.shapes[node.output[0]] = None
        return
    if starts is None or ends is None or (_input(node, 3) and axes is None):
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
    it: Interpreter,
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


def _transpose(it: Interpreter, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if shape is None:
        it.shapes[node.output[0]] = None
        return
    perm = _attr(node, "perm") or list(reversed(range(len(shape))))
    it.shapes[node.output[0]] = [shape[p] for p in perm]


def _matmul(it: Interpreter, node: onnx.NodeProto) -> None:
    a, b = it.shape(node.input[0]), it.shape(node.input[1])
    if a is None or b is None or not a or not b:
        it.shapes[node.output[0]] = None
        return
    a2 = a if len(a) > 1 else [lit(1)] + a
    b2 = b if len(b) > 1 else b + [lit(1)]
    it.unify(node, [a2[-1], b2[-2]], broadcast=False)
    batch = it.broadcast(node, [a2[:-2], b2[:-2]]) or []
    out = batch + ([a2[-2]] if len(a) > 1 else []) + ([b2[-1]] if len(b) > 1 else [])
    it.shapes[node.output[0]] = out


def _gemm(it: Interpreter, node: onnx.NodeProto) -> None:
    a, b = it.shape(node.input[0]), it.shape(node.input[1])
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        it.shapes[node.output[0]] = None
        return
    rows = a[1] if _attr(node, "transA", 0) else a[0]
    cols = b[0] if _attr(node, "transB", 0) else b[1]
    it.shapes[node.output[0]] = [rows, cols]


def _reduce(it: Interpreter, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    axes = _axes(it, node)
    keep = int(_attr(node, "keepdims", 1))
    if shape is None or (axes is None and _input(node, 1)):
        it.shapes[node.output[0]] = None
        return
    chosen = {a % len(shape) for a in axes} if axes else set(range(len(shape)))
    if keep:
        it.shapes[node.output[0]] = [lit(1) if i in chosen else d for i, d in enumerate(shape)]
    else:
        it.shapes[node.output[0]] = [d for i, d in enumerate(shape) if i not in chosen]


def _flatten(it: Interpreter, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    if shape is None or any(d.expr is None for d in shape):
        it.shapes[node.output[0]] = [UNKNOWN, UNKNOWN]
        return
    axis = int(_attr(node, "axis", 1)) % (len(shape) + 1)
    head = prod((d.expr for d in shape[:axis]), start=ONE)
    tail = prod((d.expr for d in shape[axis:]), start=ONE)
    it.shapes[node.output[0]] = [Dim(head), Dim(tail)]


def _constant_of_shape(it: Interpreter, node: onnx.NodeProto) -> None:
    values = it.value(node.input[0])
    if values is None:
        length = it.shape(node.input[0])
        known = (length is not None and len(length) == 1 and length[0].literal is not None
                 and 0 <= length[0].literal <= MAX_RANK)
        it.shapes[node.output[0]] = [UNKNOWN] * length[0].literal if known else None
        return
    it.shapes[node.output[0]] = [_born(node, 0, i, v) for i, v in enumerate(values)]
    tensor = _attr(node, "value")
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


def _born(node: onnx.NodeProto, index: int, position: int, value: Dim) -> Dim:
    """A dim taken from a shape-like input: keep its origin, or mark it born at this node."""
    if value.expr is None or value.symbolic or value.origins:
        return value
    origin = Origin(node.name, node.op_type, index, position, node.input[index], False)
    return Dim(value.expr, (origin,))


def _expand(it: Interpreter, node: onnx.NodeProto) -> None:
    data, target = it.shape(node.input[0]), it.value(node.input[1])
    if target is None:
        it.shapes[node.output[0]] = None
        return
    target = [
        # -1 in an Expand shape is not ONNX, but 1 keeps the data dim: the same
        lit(1) if t.literal == 1 else _born(node, 1, i, t)
        for i, t in enumerate(target)
    ]
    it.shapes[node.output[0]] = it.broadcast(node, [data, target])


def _tile(it: Interpreter, node: onnx.NodeProto) -> None:
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
            out.append(_born(node, 1, i, repeat))
        else:
            out.append(Dim(dim.expr * repeat.expr))
    it.shapes[node.output[0]] = out


def _range(it: Interpreter, node: onnx.NodeProto) -> None:
    start, limit, delta = (it.value(name) for name in node.input[:3])
    it.shapes[node.output[0]] = [UNKNOWN]
    if start is None or limit is None or delta is None:
        return
    s, lim, d = start[0], limit[0], delta[0]
    if s.literal is not None and lim.literal is not None and d.literal:
        count = max(0, -(-(lim.literal - s.literal) // d.literal))
        it.shapes[node.output[0]] = [_born(node, 1, 0, lit(count))]
    elif s.literal == 0 and d.literal == 1 and lim.expr is not None:
        it.shapes[node.output[0]] = [Dim(lim.expr)]


def _split(it: Interpreter, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    axis = int(_attr(node, "axis", 0))
    sizes = _attr(node, "split")
    if sizes is None and _input(node, 1):
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


def _layer_norm(it: Interpreter, node: onnx.NodeProto) -> None:
    it.shapes[node.output[0]] = it.shape(node.input[0])
    for name in node.output[1:]:
        it.shapes[name] = None


def _reshape(it: Interpreter, node: onnx.NodeProto) -> None:
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
        if t.literal == 0 and not int(_attr(node, "allowzero", 0)):
            out.append(data[i] if data is not None and i < len(data) else UNKNOWN)
        else:
            out.append(_born(node, 1, i, t) if t.literal != -1 else t)
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


def _softmax_like(it: Interpreter, node: onnx.NodeProto) -> None:
    it.shapes[node.output[0]] = it.shape(node.input[0])
    for name in node.output[1:]:
        it.shapes[name] = None


def _conv(it: Interpreter, node: onnx.NodeProto) -> None:
    """Conv, ConvTranspose and the pools: batch passes through, spatial sizes by formula.

    A spatial size that stays a symbol's (stride 1, padding that undoes the kernel) is
    that symbol; any other computed from a symbol is a derived symbol named by its
    formula (`(floor((frames + -1)/2) + 1)`), with its dummy size where known.
    """
    x = it.shape(node.input[0])
    weight = it.shape(_input(node, 1)) if node.op_type in ("Conv", "ConvTranspose") else None
    if x is None or len(x) < 3:
        it.shapes[node.output[0]] = None
        return
    spatial = len(x) - 2
    kernel = _attr(node, "kernel_shape")
    if kernel is None and weight is not None and len(weight) == len(x):
        kernel = [d.literal for d in weight[2:]]
    if node.op_type.startswith("Global"):
        it.shapes[node.output[0]] = [x[0], x[1]] + [lit(1)] * spatial
        return
    if kernel is None or None in kernel:
        it.shapes[node.output[0]] = [x[0]] + [UNKNOWN] * (len(x) - 1)
        return
    strides = list(_attr(node, "strides", [1] * spatial))
    dilations = list(_attr(node, "dilations", [1] * spatial))
    pads = list(_attr(node, "pads", [0] * 2 * spatial))
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    ceil_mode = bool(_attr(node, "ceil_mode", 0))
    if node.op_type == "Conv":
        channels = weight[0] if weight else UNKNOWN
    elif node.op_type == "ConvTranspose":
        group = int(_attr(node, "group", 1))
        channels = Dim(weight[1].expr * lit(group).expr) if weight and weight[1].expr else UNKNOWN
    else:
        channels = x[1]
    out = [x[0], channels]
    output_shape = _attr(node, "output_shape")
    for axis in range(spatial):
        k, s, d = kernel[axis], strides[axis], dilations[axis]
        padding = pads[axis] + pads[axis + spatial]
        if output_shape is not None:
            out.append(lit(int(output_shape[axis])))
        elif node.op_type == "ConvTranspose":
            extra = list(_attr(node, "output_padding", [0] * spatial))[axis]
            out.append(_affine(it, x[2 + axis], s, extra + (k - 1) * d + 1 - padding - s, 1,
                               False, transpose=True))
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(_affine(it, x[2 + axis], 1, 0, s, True))  # ceil(x / s)
        else:
            if auto_pad == "VALID":
                padding = 0
            out.append(_affine(it, x[2 + axis], 1, padding - d * (k - 1) - 1, s, ceil_mode,
                               plus_one=True))
    it.shapes[node.output[0]] = out


def _affine(it: Interpreter, size: Dim, scale: int, offset: int, stride: int, ceil: bool,
            plus_one: bool = False, transpose: bool = False) -> Dim:
    """floor((scale*size + offset) / stride) (+ 1): literally, as the same symbol, or derived.

    A derived size is named in one canonical form, `floor((x + c)/s)` (`floor(x/s)` when c is
    0), so a convolution's output and the same size computed as `x // s` are one symbol.
    """
    if plus_one:  # floor((x + o)/s) + 1 == floor((x + o + s)/s)
        offset, plus_one = offset + stride, False

    def apply(value: int) -> int:
        top = scale * value + offset
        return -(-top // stride) if ceil else top // stride

    if size.literal is not None:
        return lit(apply(size.literal))
    if size.expr is None:
        return UNKNOWN
    if scale == 1 and stride == 1 and offset == 0:
        return size
    known = it.size_of(size.expr)
    expr = size.expr
    if transpose:
        return it.derive(f"{scale}*{expr} + {offset}",
                         None if known is None else scale * known + offset,
                         lambda ev: scale * ev(expr) + offset, parts=[expr])
    inner = f"{expr}" if offset == 0 else f"({expr} + {offset})"
    text = f"{'ceil' if ceil else 'floor'}({inner}/{stride})"
    return it.derive(text, None if known is None else apply(known), lambda ev: apply(ev(expr)),
                     parts=[expr])


def _resize(it: Interpreter, node: onnx.NodeProto) -> None:
    """Output sizes from `sizes` (symbolic where computed) or from literal `scales`."""
    x = it.shape(node.input[0])
    sizes = it.value(_input(node, 3)) if _input(node, 3) else None
    if sizes is not None and (x is None or len(sizes) == len(x)):
        it.shapes[node.output[0]] = list(sizes)
        return
    scales_name = _input(node, 2)
    tensor = it.initializers.get(scales_name) if scales_name else None
    small = tensor is not None and product(tensor.dims) <= MAX_VALUES  # one scale per axis
    scales = it.read_tensor(tensor) if small else None
    if x is None or scales is None or len(scales.reshape(-1)) != len(x):
        it.shapes[node.output[0]] = None if x is None else [UNKNOWN] * len(x)
        return
    out = []
    for dim, scale in zip(x, scales.reshape(-1).tolist(), strict=True):
        if scale == 1:
            out.append(dim)
        elif dim.literal is not None:
            out.append(lit(int(dim.literal * scale)))
        elif float(scale).is_integer() and dim.expr is not None:
            out.append(Dim(dim.expr * lit(int(scale)).expr))
        else:
            out.append(UNKNOWN)
    it.shapes[node.output[0]] = out


HANDLERS: dict[str, Callable[[Interpreter, onnx.NodeProto], None]] = {
    "Constant": _constant,
    "Shape": _shape,
    "Size": _size,
    "Gather": _gather,
    "GatherND": _gather_nd,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Flatten": _flatten,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    "Range": _range,
    "Split": _split,
    "LayerNormalization": _layer_norm,
    "Cast": _cast,
    "CastLike": _cast,
    "Identity": _same,
    "Dropout": _softmax_like,
}
for _op in (
    "Add Sub Mul Div Pow Mod Where Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor "
    "Max Min Sum Mean PRelu BitwiseAnd BitwiseOr"
).split():
    HANDLERS[_op] = _elementwise
for _op in (
    "Relu Gelu Erf Sqrt Tanh Sigmoid Neg Not IsNaN IsInf Abs Exp Log Reciprocal Softmax "
    "LogSoftmax Ceil Floor Round Sign Sin Cos HardSigmoid LeakyRelu Elu Selu Softplus Clip "
    "CumSum Trilu Mish HardSwish"
).split():
    HANDLERS[_op] = _softmax_like
for _op in "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2 ArgMax ArgMin".split():
    HANDLERS[_op] = _reduce
for _op in ("Conv ConvTranspose ConvInteger MaxPool AveragePool LpPool GlobalAveragePool "
            "GlobalMaxPool GlobalLpPool").split():
    HANDLERS[_op] = _conv
HANDLERS["Resize"] = _resize
