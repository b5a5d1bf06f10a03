"""The Reshape rule: a target literal where the data dims, grouped by product, carry symbols.

Data and target dims are split into runs of equal product (`[8, 26, 12]` on `[batch, 4,
seq, 12]`); a target literal that stands for a symbol (or a product of them) is frozen,
and the verdict carries the target with the symbols put back (`reshape_output`), so the
propagation downstream sees the shape the node should have made. A target that mixes a
symbol with literals consistently is the model's own, and is not judged.
"""

from __future__ import annotations

from fractions import Fraction
from math import prod

import onnx

from ..findings import Finding, FrozenValue, Skip
from .dims import ONE, Dim, Expr
from .frozen_common import Context, Verdict, dummy_size, explain
from .propagate_layout import reshape_output
from .state import SymbolState


def reshape_rule(it: SymbolState, node: onnx.NodeProto, context: Context) -> Verdict | Skip | None:
    """A literal in the target where the data's dims, grouped by product, carry a symbol."""
    data, target = it.shape(node.input[0]), it.value(node.input[1])
    if target is None:
        return None  # a computed target: symbolic where it needs to be
    literal = [i for i, t in enumerate(target) if t.literal is not None and t.literal > 1]
    if not literal:
        return None
    if data is None:
        return Skip(node.name, node.op_type, "the data shape is unknown")
    if not any(d.symbolic for d in data):
        return None
    if any(d.expr is None for d in data):
        return Skip(node.name, node.op_type, "the data shape is not fully known")
    if any(t.expr is None for t in target):
        return _partly_known(node, data, target, literal, context)
    allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
    resolved = _resolve_zeros(data, target, allowzero)
    if _clean(data, resolved):
        return None
    fixed = _fix(data, resolved, context)
    if fixed is None:
        numel_ok = _numel_fits(data, resolved)
        if numel_ok:
            return None  # mixes a symbol with literals, but consistently: not ours to judge
        # Sizes the data has as literals too (heads, head size) are the model's, not frozen.
        own = {d.literal for d in data if d.literal is not None}
        frozen = tuple(
            FrozenValue(i, target[i].literal, None, explain(target[i].literal, None, context.dummy))
            for i in literal if target[i].literal not in own
        )
        if not frozen and _drops_batch(data, resolved):
            # [4, seq, 12] from [batch, 4, seq, 12]: 4 is batch x heads at a dummy batch of 1.
            frozen = tuple(FrozenValue(i, target[i].literal, None,
                                       f"{target[i].literal}: the batch is gone, it holds at a "
                                       "dummy batch of 1 only") for i in literal)
        if not frozen:  # only the model's own sizes: a constraint of the model, not a dummy
            return None
        reason = "the target cannot fit the symbolic data at any other size"
        return Verdict(_finding(node, frozen, reason), None)
    frozen = tuple(
        FrozenValue(i, t.literal, str(f.expr), explain(t.literal, f.expr, context.dummy),
                    f.expr.sympy)
        for i, (t, f) in enumerate(zip(resolved, fixed, strict=True))
        if f.expr != t.expr and t.literal is not None
    )
    shown = "[" + ", ".join(str(t) for t in target) + "]"
    reason = f"target {shown} holds export sizes where the data {_text(data)} is dynamic"
    return Verdict(_finding(node, frozen, reason), reshape_output(data, fixed, node))


def _partly_known(node: onnx.NodeProto, data: list[Dim], target: list[Dim], literal: list[int],
                  context: Context) -> Verdict | Skip | None:
    """A target with elements computed at run time from data (GLiNER's longest text, from
    `text_lengths.max()`): those cannot be frozen; each literal is judged against the export
    sizes of the data's dims, which must all be known."""
    names = sorted({name for d in data for name in d.expr.symbols})
    missing = [name for name in names if context.dummy.get(name) is None]
    if missing:
        return Skip(node.name, node.op_type, "the target is only partly known and the export "
                    f"size of {', '.join(missing)} is not (--dummy gives it)")
    sizes = {}
    for dim in data:
        if dim.symbolic:
            sizes.setdefault(dummy_size(dim.expr, context), dim.expr)
    frozen = tuple(FrozenValue(i, target[i].literal, str(sizes[target[i].literal]),
                               f"{target[i].literal} = export {sizes[target[i].literal]}",
                               sizes[target[i].literal].sympy)
                   for i in literal if target[i].literal in sizes)
    if not frozen:
        return None
    shown = "[" + ", ".join(str(t) for t in target) + "]"
    reason = f"target {shown} holds export sizes of the data {_text(data)}"
    return Verdict(_finding(node, frozen, reason), None)


def _drops_batch(data: list[Dim], target: list[Dim]) -> bool:
    """The data has a batch and no target dim carries it (nor a -1 that could)."""
    def has_batch(dims: list[Dim]) -> bool:
        return any(d.expr is not None and "batch" in d.expr.symbols for d in dims)

    return has_batch(data) and not has_batch(target) and all(t.literal != -1 for t in target)


def _finding(node: onnx.NodeProto, frozen: tuple[FrozenValue, ...], reason: str) -> Finding:
    return Finding(
        "frozen-shape", node.name, node.op_type, frozen, reason, input_index=1, tensor=node.input[1]
    )


def _text(shape: list[Dim]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _resolve_zeros(data: list[Dim], target: list[Dim], allowzero: bool) -> list[Dim]:
    if allowzero:
        return list(target)
    return [data[i] if t.literal == 0 and i < len(data) else t for i, t in enumerate(target)]


def _with_hole(data: list[Dim], target: list[Dim]) -> list[Expr] | None:
    """The target's exprs with -1 filled in; None when it cannot be filled."""
    holes = [i for i, t in enumerate(target) if t.literal == -1]
    exprs = [t.expr for t in target]
    if not holes:
        return exprs
    if len(holes) > 1:
        return None
    numel = prod((d.expr for d in data), start=ONE)
    known = prod((e for i, e in enumerate(exprs) if i != holes[0]), start=ONE)
    if known.coef == 0:
        return None  # a 0 beside the -1: nothing to infer it from
    inferred = numel / known
    if not inferred.valid:
        return None
    exprs[holes[0]] = inferred
    return exprs


def _numel_fits(data: list[Dim], target: list[Dim]) -> bool:
    exprs = _with_hole(data, target)
    if exprs is None:
        return False
    return prod(exprs, start=ONE) == prod((d.expr for d in data), start=ONE)


def _clean(data: list[Dim], target: list[Dim]) -> bool:
    """Dims grouped by equal products; no group mixes a data symbol with a target literal > 1."""
    exprs = _with_hole(data, target)
    if exprs is None:
        return False
    groups = _groups([d.expr for d in data], exprs)
    if groups is None:
        return False
    holes = [i for i, t in enumerate(target) if t.literal == -1]
    if holes:  # the -1 takes whatever is left: judge the dims on each side of it
        given = [t.expr for t in target]
        data_exprs = [d.expr for d in data]
        return (_side_clean(data_exprs, given[: holes[0]])
                and _side_clean(data_exprs[::-1], given[holes[0] + 1 :][::-1]))
    for left, right in groups:
        # A group whose data carries a symbol is clean when the target's literal part is the
        # data's ([batch*4] split into [batch, 4] is; [batch, sequence] as [16] is not).
        if any(e.powers for e in left) and _literal_part(right) != _literal_part(left):
            return False
    return True


def _side_clean(data: list[Expr], side: list[Expr]) -> bool:
    """The target dims before (or, reversed, after) a -1, covered by the data's from that end:
    a literal only by literal data (`[-1, 9, 1]` on `[batch, sequence, 18]` is clean), a
    symbolic dim by the data's same product (`[2, 8, -1]` on `[batch, sequence, ...]` is not).
    The literal part of a symbolic data dim may be split off next to the -1, which takes the
    rest: `[-1, 4, sequence, sequence]` on `[4*batch, sequence, sequence]` splits heads."""
    i, budget, split = 0, Fraction(1), False
    for t in side:
        if t.literal == 1:
            continue
        if t.coef == 0:
            return False
        if split:
            return False  # the symbol split off goes to the -1: nothing may come after it
        if t.powers:
            if budget != 1:
                return False
            product = ONE
            while product != t and i < len(data) and len(product.powers) <= len(t.powers):
                product, i = product * data[i], i + 1
            if product != t:
                return False
            continue
        while budget % t.coef:
            if i >= len(data):
                return False
            split = bool(data[i].powers)
            budget, i = budget * data[i].coef, i + 1
            if split and budget % t.coef:
                return False
        budget /= t.coef
    return True


def _literal_part(exprs: list[Expr]) -> Fraction:
    return prod((e.coef for e in exprs), start=Fraction(1))


def _groups(left: list[Expr], right: list[Expr]) -> list[tuple[list[Expr], list[Expr]]] | None:
    """Split both dim lists into runs of equal product; None when the products never meet."""
    groups = []
    i = j = 0
    while i < len(left) or j < len(right):
        group_left: list[Expr] = []
        group_right: list[Expr] = []
        a = b = ONE
        if i < len(left):
            a = left[i]
            group_left.append(left[i])
            i += 1
        if j < len(right):
            b = right[j]
            group_right.append(right[j])
            j += 1
        while a != b:
            if i < len(left) and (j >= len(right) or _size(a) < _size(b)):
                a = a * left[i]
                group_left.append(left[i])
                i += 1
            elif j < len(right):
                b = b * right[j]
                group_right.append(right[j])
                j += 1
            else:
                return None
        groups.append((group_left, group_right))
    return groups


def _size(expr: Expr) -> float:
    """An order for growing groups: symbols count as large."""
    return float(expr.coef) * (1 << 20) ** sum(p for _, p in expr.powers)


def _fix(data: list[Dim], target: list[Dim], context: Context) -> list[Dim] | None:
    """The target with literals put back as the data's symbols, if that makes it clean."""
    fixed = list(target)
    for i, t in enumerate(target):
        if t.literal is None or t.literal <= 0 or i >= len(data):
            continue
        if data[i].symbolic and data[i].expr != t.expr:
            fixed[i] = Dim(data[i].expr)
    if fixed != list(target) and _clean(data, fixed):
        return fixed
    grouped = _fix_by_sizes(data, target, context)
    if grouped is not None:
        return grouped
    # One literal standing for a product of symbols (batch*sequence flattened).
    for i, t in enumerate(target):
        for candidate in _products(data):
            if t.literal is not None and dummy_size(candidate, context) == t.literal:
                trial = list(target)
                trial[i] = Dim(candidate)
                if _clean(data, trial):
                    return trial
    return None


def _fix_by_sizes(data: list[Dim], target: list[Dim], context: Context) -> list[Dim] | None:
    """Group data and target dims by equal products of their export sizes; a target literal
    facing data symbols becomes their product (`[8, 26, 12]` on `[batch, 4, seq, 12]` is
    `[batch*4, seq, 12]`), or, one data dim split in several, the factors whose sizes match."""
    sizes = [dummy_size(d.expr, context) for d in data]
    if None in sizes or any(t.expr is None for t in target):
        return None
    values = [t.literal if t.literal is not None else dummy_size(t.expr, context)
              for t in target]
    if any(v is None or v == 0 for v in values) or values.count(-1) > 1:
        return None
    if -1 in values:
        known = prod(v for v in values if v != -1)
        if not known or prod(sizes) % known:
            return None
        values[values.index(-1)] = prod(sizes) // known
    fixed, i, j = list(target), 0, 0
    while i < len(data) and j < len(values):
        left, right = [i], [j]
        a, b = sizes[i], values[j]
        while a != b:
            if a < b and left[-1] + 1 < len(data):
                left.append(left[-1] + 1)
                a *= sizes[left[-1]]
            elif b < a and right[-1] + 1 < len(values):
                right.append(right[-1] + 1)
                b *= values[right[-1]]
            else:
                return None
        exprs = [data[k].expr for k in left]
        symbolic = any(e.powers for e in exprs)
        if symbolic and len(right) == 1 and target[j].literal not in (None, -1):
            fixed[j] = Dim(prod(exprs, start=ONE))
        elif symbolic and len(left) == 1 and len(right) > 1:
            factors = [Expr.of(n) for n, p in exprs[0].powers for _ in range(p)]
            for k in right:
                match = next((f for f in factors
                              if dummy_size(f, context) == values[k] and values[k] > 1), None)
                if match is not None and target[k].literal != -1:
                    fixed[k] = Dim(match)
                    factors.remove(match)
        i, j = left[-1] + 1, right[-1] + 1
    return fixed if fixed != list(target) and _clean(data, fixed) else None


def _products(data: list[Dim]) -> list[Expr]:
    out = []
    for start in range(len(data)):
        acc = ONE
        for d in data[start:]:
            if not d.symbolic:
                break
            acc = acc * d.expr
            out.append(acc)
    return out
