"""Repair constants folded at export with a dummy-sized axis or dummy sizes as values.

Pattern: a `folded-constant` finding. Check, by `part`: for "dim" (an axis of the
constant is the export size), the constant must be recognisably an arange along
that one axis (every other axis 1, values start + step * i, at least two of them),
or, frozen on several axes, start + sum of step_k * i_k over them (relative
positions) or one value everywhere; for "value" (elements are export sizes), an
integer vector or scalar. Rewrite: a `Range` over the runtime size reshaped to the
constant's layout (a sum of them, or an Expand), or the vector rebuilt from
`Shape -> Gather -> Concat`; every reader of the constant gets it.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..findings import Finding
from .edit import Anchor, Declined, GraphEdit
from .results import Change
from .size_nodes import frozen_expr, rebuilt_sizes, size, vector, vector_text


def repair_constant(edit: GraphEdit, finding: Finding, index: int) -> Change | Declined:
    tensor = finding.tensor
    if tensor is None:
        return Declined("the finding names no constant")
    first = edit.replaced_by(tensor)
    if first is not None:
        return Change(index, finding.node, finding.op_type, f"rebuilt with #{first}", tensor, "")
    values = edit.constant(tensor)
    if values is None:
        return Declined(f"the values of {tensor!r} are not readable")
    anchor = edit.first_consumer(tensor)
    if isinstance(anchor, Declined):
        return anchor
    if finding.part == "dim":
        built = _arange(edit, finding, values, anchor)
        action = "arange rebuilt as Range over the runtime size"
    else:
        built = _vector(edit, finding, values, anchor)
        action = "size vector rebuilt from Shape -> Gather -> Concat"
    if isinstance(built, Declined):
        return built
    name, before, after = built
    added = edit.added()
    for reader in edit.replace_everywhere(tensor, name):
        edit.note(reader, f"constant {tensor} {before} -> {after}")
    edit.rebuilt(tensor, index)
    return Change(index, finding.node, finding.op_type, action, before, after, added)


def _arange(
    edit: GraphEdit, finding: Finding, values: np.ndarray, anchor: Anchor
) -> tuple[str, str, str] | Declined:
    shape = list(values.shape)
    described = f"{values.dtype} {shape}"
    axes = sorted({f.position for f in finding.frozen})
    if len(axes) > 1:
        return _affine(edit, finding, values, anchor, axes)
    axis = axes[0]
    expr = frozen_expr(finding.frozen[0])
    if expr is None:
        return Declined(f"no symbol known for axis {axis} of constant {described}")
    if any(size != 1 for i, size in enumerate(shape) if i != axis):
        return Declined(f"constant {described} varies along more than the frozen axis")
    if values.dtype.kind not in "iuf":
        return Declined(f"constant {described} is not numeric, so not an arange")
    flat = values.reshape(-1)
    if flat.size < 2:
        return Declined(f"constant {described} has one element: not recognisably an arange")
    start, step = flat[0], flat[1] - flat[0]
    if step == 0 or not np.array_equal(flat, start + step * np.arange(flat.size)):
        head = ", ".join(str(v) for v in flat[:6].tolist())
        return Declined(f"constant {described} is not an arange (values {head}, ...)")
    if values.dtype.kind == "f":
        return Declined(f"constant {described} is a float arange: rounding is not proved")
    length = size(edit, expr, anchor)
    if isinstance(length, Declined):
        return length
    axes0 = edit.add_initializer("/subgraft/axes", np.array([0], np.int64))
    limit = edit.add_node(anchor, "Squeeze", [length, axes0], f"{expr} as a scalar")
    if step != 1:
        factor = edit.add_initializer("/subgraft/step", np.array(int(step), np.int64))
        limit = edit.add_node(anchor, "Mul", [limit, factor], "arange end")
    first = edit.add_initializer("/subgraft/start", np.array(int(start), np.int64))
    if start != 0:
        limit = edit.add_node(anchor, "Add", [limit, first], "arange end")
    delta = edit.add_initializer("/subgraft/delta", np.array(int(step), np.int64))
    out = edit.add_node(anchor, "Range", [first, limit, delta], f"arange over {expr}")
    layout = [-1 if i == axis else 1 for i in range(len(shape))]
    if layout != [-1]:
        target = edit.add_initializer("/subgraft/layout", np.array(layout, np.int64))
        out = edit.add_node(anchor, "Reshape", [out, target], "the constant's layout")
    if values.dtype != np.int64:
        to = helper.np_dtype_to_tensor_dtype(values.dtype)
        out = edit.add_node(anchor, "Cast", [out], "the constant's dtype", to=to)
    dims = ", ".join(str(expr) if i == axis else "1" for i in range(len(shape)))
    end = f"{start} + {step}*{expr}" if (start, step) != (0, 1) else str(expr)
    before = f"{described} = arange({start}, {start + step * flat.size}, {step})"
    return out, before, f"Range({start}, {end}, {step}) as [{dims}]"


def _affine(
    edit: GraphEdit, finding: Finding, values: np.ndarray, anchor: Anchor, axes: list[int]
) -> tuple[str, str, str] | Declined:
    """Frozen on several axes: rebuilt where each element is start + sum of step_k * i_k
    (relative positions `j - i`, and those times a weight), as a sum of Ranges broadcast
    over those axes, in the constant's dtype; one value everywhere is expanded."""
    shape, dtype = list(values.shape), values.dtype
    described = f"{dtype} {shape}"
    symbols = {f.position: frozen_expr(f) for f in finding.frozen}
    if any(symbols[a] is None for a in axes):
        return Declined(f"no symbol known for every frozen axis of constant {described}")
    if any(size != 1 for i, size in enumerate(shape) if i not in axes):
        return Declined(f"constant {described} varies along more than the frozen axes")
    if dtype.kind not in "iuf":
        return Declined(f"constant {described} is not numeric")
    start = values.reshape(-1)[0]
    steps = {a: values[tuple(1 if i == a else 0 for i in range(len(shape)))] - start
             for a in axes}
    grid = np.indices(shape)
    fitted = start + sum(steps[a] * grid[a] for a in axes)
    scale = float(np.abs(values).max()) or 1.0
    if not np.allclose(values, fitted, rtol=0, atol=1e-6 * scale):
        head = ", ".join(f"{v:g}" for v in values.reshape(-1)[:6].tolist())
        return Declined(f"constant {described} is frozen on {len(axes)} axes and is not "
                        f"start + step * index along them (values {head}, ...)")
    to = helper.np_dtype_to_tensor_dtype(dtype)
    axes0 = edit.add_initializer("/subgraft/axes", np.array([0], np.int64))
    zero = edit.add_initializer("/subgraft/zero", np.array(0, np.int64))
    one = edit.add_initializer("/subgraft/one", np.array(1, np.int64))
    out, terms = None, []
    for axis in [a for a in axes if steps[a] != 0]:
        length = size(edit, symbols[axis], anchor)
        if isinstance(length, Declined):
            return length
        limit = edit.add_node(anchor, "Squeeze", [length, axes0], f"{symbols[axis]} as a scalar")
        term = edit.add_node(anchor, "Range", [zero, limit, one], f"index over {symbols[axis]}")
        layout = [-1 if i == axis else 1 for i in range(len(shape))]
        layout = edit.add_initializer("/subgraft/layout", np.array(layout, np.int64))
        term = edit.add_node(anchor, "Reshape", [term, layout], "along its axis")
        if dtype != np.int64:
            term = edit.add_node(anchor, "Cast", [term], "the constant's dtype", to=to)
        if steps[axis] != 1:
            step = edit.add_initializer("/subgraft/step", np.array(steps[axis], dtype))
            term = edit.add_node(anchor, "Mul", [term, step], "times its step")
        out = term if out is None else edit.add_node(anchor, "Add", [out, term], "summed")
        terms.append(f"{steps[axis]:g}*i{axis}" if steps[axis] != 1 else f"i{axis}")
    dims = ", ".join(str(symbols[i]) if i in axes else "1" for i in range(len(shape)))
    if out is None:  # one value everywhere: that value expanded to the runtime sizes
        fill = edit.add_initializer("/subgraft/fill", np.full([1] * len(shape), start, dtype))
        sizes = vector(edit, [symbols[i] if i in axes else 1 for i in range(len(shape))], anchor)
        if isinstance(sizes, Declined):
            return sizes
        out = edit.add_node(anchor, "Expand", [fill, sizes], "filled to the runtime sizes")
        return out, f"{described} = {start:g} everywhere", f"{start:g} expanded to [{dims}]"
    if start != 0:
        first = edit.add_initializer("/subgraft/start", np.array(start, dtype))
        out = edit.add_node(anchor, "Add", [out, first], "plus the start")
    formula = " + ".join(([f"{start:g}"] if start else []) + terms).replace("+ -", "- ")
    return out, f"{described} = {formula} at export size", f"{formula} over [{dims}]"


def _vector(
    edit: GraphEdit, finding: Finding, values: np.ndarray, anchor: Anchor
) -> tuple[str, str, str] | Declined:
    if values.ndim > 1 or values.dtype.kind not in "iu":
        return Declined(f"constant {values.dtype} {list(values.shape)} is not a size vector")
    rebuilt = rebuilt_sizes(edit, finding, values, anchor)
    if isinstance(rebuilt, Declined):
        return rebuilt
    out, literal, new = rebuilt
    return out, vector_text(literal), vector_text(new)

