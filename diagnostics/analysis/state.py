"""What the symbolic interpreter knows of a graph: each value's shape, and small integers' values.

The per-op rules (`symbol_rules`, `node_inference`) read and write this state and nothing
above it; the dispatcher (`symbols.Interpreter.run`) picks each node's rule. Where dims
must agree, `unify` and `broadcast` record a literal meeting a symbol as a `Conflict` with
the literal's origin and keep the symbol, so one frozen value gives one conflict.

Every value is bounded (`limits`): a size of more than `MAX_EXPR_TERMS` terms or of degree
past `MAX_EXPR_DEGREE`, a literal past int64, a rank past `MAX_RANK` or more than
`MAX_VALUES` elements becomes unknown at the node that made it, and that node is named as
not judged, so a graph that squares a size 64 times costs 64 steps, not 2**64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from math import prod

import onnx
import sympy

from ..limits import MAX_EXPR_DEGREE, MAX_EXPR_TERMS, MAX_RANK, MAX_VALUES
from .dims import UNKNOWN, Derived, Dim, Expr, Origin, Shape, evaluate, from_sympy, lit, merge

# Element types whose values are carried (up to MAX_VALUES of them): shapes, indices, masks.
INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}


@dataclass(frozen=True)
class Conflict:
    """A symbol met a literal > 1 (or any literal where sizes must be equal)."""

    node: str
    op_type: str
    literal: Dim
    symbol: Dim


@dataclass
class SymbolState:
    """Each value's symbolic shape (and small integer values), the sizes derived from the
    input symbols, and the conflicts met so far."""

    graph: onnx.GraphProto
    read_tensor: Callable[[onnx.TensorProto], object | None]
    model: onnx.ModelProto | None = None  # for onnx's inference of ops without a rule
    shapes: dict[str, Shape] = field(default_factory=dict)
    values: dict[str, list[Dim]] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)
    conflicts: list[Conflict] = field(default_factory=list)
    unhandled: dict[str, int] = field(default_factory=dict)
    # symbol -> its size in the export dummy, where known; derived sizes are added by name
    sizes: dict[str, int] = field(default_factory=dict)
    inferred: dict[str, int] = field(default_factory=dict)  # op -> nodes onnx inference followed
    types: dict[str, int] | None = None  # element types, computed when first needed
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    _consumers: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    derived: dict[Derived, None] = field(default_factory=dict)  # every derived size met
    # what the graph says of the sizes beyond their shapes, for the probe to choose valid ones:
    limits: dict[str, int] = field(default_factory=dict)  # symbol -> most (a table sliced by it)
    # node -> why a value it made was cut to unknown (past a bound): the node is not judged
    bounded: dict[str, str] = field(default_factory=dict)
    _cut: str | None = None  # set by `derive` when a size grows past its bound

    def __post_init__(self) -> None:
        for node in self.graph.node:
            for index, name in enumerate(node.input):
                self._consumers.setdefault(name, (node.name, node.op_type, index))
        for tensor in self.graph.initializer:
            self.initializers[tensor.name] = tensor
            self.add_constant(tensor.name, list(tensor.dims), tensor)

    # -- state -----------------------------------------------------------------------------

    def set_input(self, name: str, dims: Iterable[Dim]) -> None:
        self.shapes[name] = list(dims)

    def shape(self, name: str) -> Shape:
        return self.shapes.get(name)

    def value(self, name: str) -> list[Dim] | None:
        return self.values.get(name)

    def literal_values(self, name: str) -> list[int] | None:
        values = self.values.get(name)
        if values is None or any(v.literal is None for v in values):
            return None
        return [v.literal for v in values]

    def add_constant(self, name: str, dims: list[int], tensor: onnx.TensorProto | None) -> None:
        consumer = self._consumers.get(name, ("", "", 0))
        self.shapes[name] = [
            lit(d, Origin(consumer[0], consumer[1], consumer[2], axis, name, True, "dim"))
            for axis, d in enumerate(dims)
        ]
        self.constants.add(name)
        if tensor is None or prod(dims) > MAX_VALUES:
            return
        if tensor.data_type not in INT_TYPES:
            return
        array = self.read_tensor(tensor)
        if array is None:
            return
        self.values[name] = [
            lit(int(v), Origin(consumer[0], consumer[1], consumer[2], i, name, True))
            for i, v in enumerate(array.reshape(-1).tolist())
        ]

    def size_of(self, expr: Expr | None) -> int | None:
        """The export dummy's value of `expr`, where every symbol in it has a known size."""
        if expr is None:
            return None
        if expr.literal is not None:
            return expr.literal
        sizes = [self.sizes.get(name) for name in expr.symbols]
        if None in sizes:
            return None
        value = expr.coef * prod(s**p for s, (_, p) in zip(sizes, expr.powers, strict=True))
        return int(value) if value.denominator == 1 else None

    def derive(self, value: sympy.Expr, parts: Iterable[Expr] = ()) -> Dim:
        """A size computed from symbols in a way a monomial cannot write (a sum, a strided
        convolution), exactly: `value` over the input symbols, made canonical (`from_sympy`),
        so two routes to one size give one atom. Each derived atom's dummy size is recorded
        under its name where the input symbols' are known.

        `parts` are the sizes it is computed from: past `MAX_EXPR_TERMS` terms or of degree
        past `MAX_EXPR_DEGREE` written out, it is left unknown before sympy expands it.
        """
        parts = list(parts)
        if sum(e.terms for e in parts) > MAX_EXPR_TERMS:
            self._cut = f"a size grew past {MAX_EXPR_TERMS} terms: left unknown"
            return UNKNOWN
        if max((e.degree for e in parts), default=0) > MAX_EXPR_DEGREE:
            self._cut = f"a size of degree past {MAX_EXPR_DEGREE}: left unknown"
            return UNKNOWN
        expr = from_sympy(value)
        if expr is None:
            return UNKNOWN
        for atom, _ in expr.powers:
            if isinstance(atom, Derived) and atom not in self.derived:
                self.derived[atom] = None
                size = evaluate(atom.value, self.sizes)
                if size is not None:
                    self.sizes.setdefault(str(atom), size)
        return Dim(expr)

    def _too_big(self, dim: Dim) -> str | None:
        expr = dim.expr
        if expr is None:
            return None
        if max(expr.coef.numerator.bit_length(), expr.coef.denominator.bit_length()) > 64:
            return "a size past int64: left unknown"
        if len(expr.powers) > 1 and expr.terms > MAX_EXPR_TERMS:
            return f"a size grew past {MAX_EXPR_TERMS} terms: left unknown"
        if sum(abs(p) for _, p in expr.powers) > MAX_EXPR_DEGREE:
            return f"a size of degree past {MAX_EXPR_DEGREE}: left unknown"
        return None

    def bound(self, node: onnx.NodeProto, why: str | None = None) -> None:
        """Cut what the node made past the bounds to unknown, and say so for the node (with
        `why`, where the caller knows better than the bounds why the node is not judged)."""
        why = why or self._cut
        self._cut = None
        for name in node.output:
            shape = self.shapes.get(name)
            if shape is not None and len(shape) > MAX_RANK:
                self.shapes[name] = None
                why = why or f"a rank past {MAX_RANK}: left unknown"
            elif shape is not None:
                self.shapes[name], cut = self._without_big(shape)
                why = why or cut
            values = self.values.get(name)
            if values is not None and len(values) > MAX_VALUES:
                del self.values[name]  # a long shape tensor is data, not a shape
            elif values is not None:
                self.values[name], cut = self._without_big(values)
                why = why or cut
        if why:
            self.bounded.setdefault(node.name or node.op_type, why)

    def _without_big(self, dims: list) -> tuple[list, str | None]:
        """`dims` with each one past the bounds made unknown, and the first reason."""
        reasons = [self._too_big(d) for d in dims]
        if not any(reasons):
            return dims, None
        cut = [UNKNOWN if r else d for d, r in zip(dims, reasons, strict=True)]
        return cut, next(r for r in reasons if r)

    def smallest_derived(self, sizes: dict[str, int]) -> int | None:
        """The smallest derived size (a convolution's output...) at `sizes` of the input
        symbols; below 1, those sizes are too small for the model. None: nothing derived."""
        values = [evaluate(atom.value, sizes) for atom in self.derived]
        return min((v for v in values if v is not None), default=None)

    def conflict(self, node: onnx.NodeProto, literal: Dim, symbol: Dim) -> None:
        self.conflicts.append(Conflict(node.name, node.op_type, literal, symbol))

    def broadcast(self, node: onnx.NodeProto, shapes: list[Shape]) -> Shape:
        if any(s is None for s in shapes):
            return None
        rank = max(len(s) for s in shapes)
        padded = [[lit(1)] * (rank - len(s)) + list(s) for s in shapes]
        return [self.unify(node, [p[axis] for p in padded], broadcast=True) for axis in range(rank)]

    def unify(self, node: onnx.NodeProto, dims: list[Dim], broadcast: bool) -> Dim:
        """The dim several must agree on; a literal meeting a symbol is a conflict."""
        if broadcast:
            dims = [d for d in dims if d.literal != 1] or dims[:1]
            # An unknown dim is 1 or equal to the others: the known ones decide.
            dims = [d for d in dims if d.expr is not None] or dims[:1]
        if any(d.expr is None for d in dims):
            return UNKNOWN
        symbolic = [d for d in dims if d.symbolic]
        literal = [d for d in dims if not d.symbolic]
        if symbolic and literal:
            for d in literal:
                self.conflict(node, d, symbolic[0])
            return symbolic[0]
        if literal and len({d.expr for d in literal}) == 1:
            return merge(literal)
        return dims[0]

def misfit(exc: Exception) -> str:
    """Why a node whose attributes do not fit its inputs (an axis past the rank, a stride
    of 0) is not judged: onnxruntime would refuse it too."""
    return f"its attributes do not fit its inputs ({type(exc).__name__}): not followed"
