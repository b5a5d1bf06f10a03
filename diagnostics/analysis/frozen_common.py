"""What the frozen-shape rules share: the `Verdict` a rule returns, the `Context` it judges in,
and how a literal is explained ("2 = export batch").

A rule is pattern -> check: it reads the interpreter's state (`symbol_state`) at one node
and returns a `Verdict` (the finding, and the output the node should have had), a `Skip`
with the reason it cannot judge, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import onnx

from ..findings import Finding, Skip
from .dims import Expr, Shape
from .state import SymbolState


@dataclass(frozen=True)
class Verdict:
    """A rule's finding, and the output the node should have had."""

    finding: Finding
    output: Shape  # what the node's output should be, for the propagation downstream


@dataclass(frozen=True)
class Context:
    """What a rule judges against."""

    dummy: dict[str, int]  # symbol -> its export dummy size


Rule = Callable[[SymbolState, onnx.NodeProto, Context], "Verdict | Skip | None"]


def explain(value: int, symbol: Expr | None, dummy: dict[str, int]) -> str:
    """Why a literal looks frozen: "2 = export batch", "16 = export batch x sequence"."""
    if symbol is None:
        return f"{value} where a dynamic size belongs"
    if value == 1 and len(symbol.symbols) == 1:
        return f"1 = a dummy {symbol} of 1, specialised"
    names = " x ".join(symbol.symbols)
    sizes = [dummy.get(name) for name in symbol.symbols]
    if None not in sizes and all(p == 1 for _, p in symbol.powers):
        expected = symbol.coef * prod(sizes)
        if expected == value:
            return f"{value} = export {names}"
    return f"{value} where {symbol} is dynamic"


def dummy_size(expr: Expr, context: Context) -> int | None:
    """`expr` at the export dummy's sizes, where all of its symbols have one."""
    sizes = [context.dummy.get(name) for name in expr.symbols]
    if None in sizes:
        return None
    return int(expr.coef * prod(s**p for s, (_, p) in zip(sizes, expr.powers, strict=True)))
