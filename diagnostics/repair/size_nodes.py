"""The nodes that compute a size at run time, from the size's exact expression.

A symbol is read off the tensor that carries its axis (or the graph input that defines
it): `Shape -> Gather`; a product is `Mul`s; a derived size (a sum, a floor) is walked off
its sympy expression term by term (`Add`, `Sub`, `Div`), never parsed from its text; a
whole shape vector is one `Concat`. What cannot be built is `Declined`, as data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy
from onnx import helper

from ..analysis.dims import Derived, Expr, from_sympy
from ..findings import Finding, FrozenValue
from .edit import Anchor, Declined, GraphEdit


def frozen_expr(frozen: FrozenValue) -> Expr | None:
    """What a frozen value should be, as the analysis' exact `Expr`; None where it knows none."""
    return None if frozen.expr is None else from_sympy(frozen.expr)


def symbolic_sizes(
    finding: Finding, values: np.ndarray
) -> tuple[list[int], list[int | Expr]] | Declined:
    """The literal size vector, and the same with each frozen position's symbol put in."""
    literal = [int(v) for v in values.reshape(-1)]
    sizes: list[int | Expr] = list(literal)
    for frozen in finding.frozen:
        expr = frozen_expr(frozen)
        position = max(frozen.position, 0)
        if expr is None or position >= len(sizes):
            return Declined(f"no symbol known for the literal {frozen.value}")
        sizes[position] = expr
    return literal, sizes


def vector_text(values: list) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def size(edit: GraphEdit, expr: Expr, anchor: Anchor, data: str | None = None) -> str | Declined:
    """An int64 [1] tensor holding `expr` at run time, taken from `data`'s shape if it can."""
    shape = edit.shapes.get(data) if data else None
    if shape is not None:
        for axis, dim in enumerate(shape):
            if dim.expr == expr:
                return _gather(edit, anchor, data, axis, f"{expr} from {data}")
    if not expr.valid:
        return Declined(f"{expr} is not a size that can be computed")
    result = None
    for atom, power in expr.powers:
        if isinstance(atom, Derived):
            piece = _derived(edit, atom.value, anchor, str(atom))
            if isinstance(piece, Declined):
                return piece
        elif atom in edit.symbols:
            info = edit.symbols[atom]
            piece = _gather(edit, anchor, info.input, info.axis, f"{atom} from {info.input}")
        else:
            return Declined(f"no graph input defines the symbol {atom!r}")
        for _ in range(power):
            result = (
                piece
                if result is None
                else edit.add_node(anchor, "Mul", [result, piece], f"{expr}")
            )
    if result is None:
        return Declined(f"{expr} has no symbol")
    if expr.coef != 1:
        factor = edit.add_initializer("/subgraft/factor", np.array([int(expr.coef)], np.int64))
        result = edit.add_node(anchor, "Mul", [result, factor], f"{expr}")
    return result

def _derived(edit: GraphEdit, value: sympy.Expr, anchor: Anchor, purpose: str) -> str | Declined:
    """A derived size built from its exact expression: a sum term by term (`Sub` for the
    negative ones), each product by `size`, a floor of a sum of positive terms by `Div`."""
    if value.is_Integer:
        return edit.add_initializer("/subgraft/literal", np.array([int(value)], np.int64))
    if isinstance(value, sympy.floor):
        top, bottom = sympy.fraction(sympy.together(value.args[0]))
        top = sympy.expand(top)
        if not bottom.is_Integer or any(t.could_extract_minus_sign()
                                        for t in sympy.Add.make_args(top)):
            return Declined(f"{purpose} is a floor of what may be negative: not rebuilt")
        piece = _derived(edit, top, anchor, purpose)
        if isinstance(piece, Declined):
            return piece
        divisor = edit.add_initializer("/subgraft/divisor", np.array([int(bottom)], np.int64))
        return edit.add_node(anchor, "Div", [piece, divisor], purpose)
    if not value.is_Add:
        term = from_sympy(value)
        if term is None:
            return Declined(f"{purpose} is not a size that can be computed")
        return size(edit, term, anchor)
    # The positive terms first: a size is built up, then what it loses taken off.
    terms = sorted(sympy.Add.make_args(value), key=lambda t: t.could_extract_minus_sign())
    result = None
    for term in terms:
        negative = term.could_extract_minus_sign()
        piece = _derived(edit, -term if negative else term, anchor, purpose)
        if isinstance(piece, Declined):
            return piece
        if result is None and not negative:
            result = piece
            continue
        if result is None:
            result = edit.add_initializer("/subgraft/literal", np.array([0], np.int64))
        result = edit.add_node(anchor, "Sub" if negative else "Add", [result, piece], purpose)
    return result

def vector(
    edit: GraphEdit, values: Sequence[int | Expr], anchor: Anchor, data: str | None = None,
    dtype=np.int64,
) -> str | Declined:
    """A 1-D shape-like tensor: literals stay literal, exprs are computed; one Concat."""
    pieces: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            pieces.append(edit.add_initializer("/subgraft/literal", np.array(run, np.int64)))
            run.clear()

    for value in values:
        if isinstance(value, Expr) and value.literal is None:
            flush()
            piece = size(edit, value, anchor, data)
            if isinstance(piece, Declined):
                return piece
            pieces.append(piece)
        else:
            run.append(int(value.literal if isinstance(value, Expr) else value))
    flush()
    if len(pieces) == 1:
        out = pieces[0]
    else:
        out = edit.add_node(anchor, "Concat", pieces, "shape vector", axis=0)
    if np.dtype(dtype) != np.int64:
        to = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        out = edit.add_node(anchor, "Cast", [out], "shape vector dtype", to=to)
    return out


def _gather(edit: GraphEdit, anchor: Anchor, data: str, axis: int, purpose: str) -> str:
    index = edit.add_initializer("/subgraft/axis", np.array([axis], np.int64))
    return edit.add_node(anchor, "Gather", [edit.shape_of(anchor, data), index], purpose, axis=0)


def rebuilt_sizes(
    edit: GraphEdit, finding: Finding, values: np.ndarray, anchor: Anchor,
    data: str | None = None,
) -> tuple[str, list[int], list[int | Expr]] | Declined:
    """`values` (an integer vector or scalar) computed at run time, each frozen position's
    size from its expression; a scalar stays a scalar. Also the literal and the new sizes."""
    sizes = symbolic_sizes(finding, values)
    if isinstance(sizes, Declined):
        return sizes
    literal, new = sizes
    out = vector(edit, new, anchor, data=data, dtype=values.dtype)
    if isinstance(out, Declined):
        return out
    if values.ndim == 0:
        axes = edit.add_initializer("/subgraft/axes", np.array([0], np.int64))
        out = edit.add_node(anchor, "Squeeze", [out, axes], "scalar size")
    return out, literal, new
