"""Find shapes frozen at export: literals where the data carries a symbolic dim.

Rules are pattern -> check, one per op family, run while the symbols propagate:
a rule that flags a node also gives the output the node *should* have had, so one
frozen Reshape is one finding, not a cascade. Expand, Tile, ConstantOfShape, Range
and folded constants are caught where their literal meets a symbol (a `Conflict`
carrying the literal's origin). A rule that cannot judge returns a `Skip` with the
reason; it never guesses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import prod

import onnx

from .findings import Finding, FrozenValue, Skip
from .shape_algebra import ONE, UNKNOWN, Dim, Expr, Origin, Shape
from .symbol_rules import reshape_output
from .symbols import Conflict, Interpreter, misfit


@dataclass(frozen=True)
class Verdict:
    finding: Finding
    output: Shape  # what the node's output should be, for the propagation downstream


@dataclass(frozen=True)
class Context:
    dummy: dict[str, int]  # symbol -> its export dummy size


Rule = Callable[[Interpreter, onnx.NodeProto, Context], "Verdict | Skip | None"]


def find_frozen(
    interpreter: Interpreter, graph: onnx.GraphProto, dummy: dict[str, int]
) -> tuple[list[Finding], list[Skip]]:
    """Run every node through the interpreter and the rules; returns findings and skips."""
    context = Context(dummy)
    findings: list[Finding] = []
    skips: list[Skip] = []
    for node in graph.node:
        rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        try:
            verdict = rule(interpreter, node, context) if rule else None
        except (ArithmeticError, IndexError) as exc:  # an axis past the rank, a size of 0
            verdict = Skip(node.name, node.op_type, misfit(exc))
        inside = _shape_consumers_inside(node)
        if inside:  # If, Loop, Scan: their subgraphs are not followed
            skips.append(Skip(node.name, node.op_type,
                              f"{inside} shape-consuming node(s) in its subgraphs not followed"))
        cut = len(interpreter.bounded)
        interpreter.run(node)
        if len(interpreter.bounded) > cut:  # a value it made grew past a bound
            skips.append(Skip(node.name, node.op_type,
                              interpreter.bounded[node.name or node.op_type]))
        if isinstance(verdict, Skip):
            skips.append(verdict)
        elif isinstance(verdict, Verdict):
            findings.append(verdict.finding)
            interpreter.shapes[node.output[0]] = verdict.output
    findings.extend(_from_conflicts(interpreter.conflicts, context))
    return findings, skips


SHAPE_CONSUMERS = {"Reshape", "Expand", "Tile", "Slice", "Resize", "ConstantOfShape", "Range"}


def _shape_consumers_inside(node: onnx.NodeProto) -> int:
    """Shape-consuming nodes in a control-flow node's subgraphs, at any depth."""
    count = 0
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(
            attribute.graphs)
        for subgraph in graphs:
            for inner in subgraph.node:
                count += (inner.op_type in SHAPE_CONSUMERS) + _shape_consumers_inside(inner)
    return count


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


# -- Reshape -----------------------------------------------------------------------------------


def reshape_rule(it: Interpreter, node: onnx.NodeProto, context: Context) -> Verdict | Skip | None:
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
        FrozenValue(i, t.literal, str(f.expr), explain(t.literal, f.expr, context.dummy))
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
            sizes.setdefault(_dummy_size(dim.expr, context), str(dim.expr))
    frozen = tuple(FrozenValue(i, target[i].literal, sizes[target[i].literal],
                               f"{target[i].literal} = export {sizes[target[i].literal]}")
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
            if t.literal is not None and _dummy_size(candidate, context) == t.literal:
                trial = list(target)
                trial[i] = Dim(candidate)
                if _clean(data, trial):
                    return trial
    return None


def _fix_by_sizes(data: list[Dim], target: list[Dim], context: Context) -> list[Dim] | None:
    """Group data and target dims by equal products of their export sizes; a target literal
    facing data symbols becomes their product (`[8, 26, 12]` on `[batch, 4, seq, 12]` is
    `[batch*4, seq, 12]`), or, one data dim split in several, the factors whose sizes match."""
    sizes = [_dummy_size(d.expr, context) for d in data]
    if None in sizes or any(t.expr is None for t in target):
        return None
    values = [t.literal if t.literal is not None else _dummy_size(t.expr, context)
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
                              if _dummy_size(f, context) == values[k] and values[k] > 1), None)
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


def _dummy_size(expr: Expr, context: Context) -> int | None:
    sizes = [context.dummy.get(name) for name in expr.symbols]
    if None in sizes:
        return None
    return int(expr.coef * prod(s**p for s, (_, p) in zip(sizes, expr.powers, strict=True)))


# -- Slice and Resize --------------------------------------------------------------------------


def slice_rule(it: Interpreter, node: onnx.NodeProto, context: Context) -> Verdict | Skip | None:
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
        if _dummy_size(dim.expr, context) == end:
            frozen.append(
                FrozenValue(position, end, str(dim.expr), explain(end, dim.expr, context.dummy))
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


def resize_rule(it: Interpreter, node: onnx.NodeProto, context: Context) -> Verdict | Skip | None:
    """Literal `sizes` on axes whose input size is symbolic."""
    if len(node.input) < 4 or not node.input[3]:
        return None
    data, sizes = it.shape(node.input[0]), it.value(node.input[3])
    if data is None or sizes is None or len(sizes) != len(data):
        return None
    frozen = [
        FrozenValue(i, s.literal, str(d.expr), explain(s.literal, d.expr, context.dummy))
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


RULES: dict[str, Rule] = {"Reshape": reshape_rule, "Slice": slice_rule, "Resize": resize_rule}


# -- conflicts: Expand, Tile, ConstantOfShape, Range, folded constants ---------------------------


def _from_conflicts(conflicts: list[Conflict], context: Context) -> list[Finding]:
    grouped: dict[tuple, list[tuple[Conflict, Origin | None]]] = {}
    for conflict in conflicts:
        for origin in conflict.literal.origins or (None,):
            key = (
                (origin.node, origin.input_index, origin.tensor, origin.folded)
                if origin
                else (conflict.node,)
            )
            grouped.setdefault(key, []).append((conflict, origin))
    findings = []
    for pairs in grouped.values():
        group = [c for c, _ in pairs]
        origin = pairs[0][1]
        meets = tuple(dict.fromkeys(c.node for c in group))
        values: dict[int, FrozenValue] = {}
        for c, o in pairs:
            position = o.position if o else -1
            value = c.literal.literal
            values.setdefault(
                position,
                FrozenValue(
                    position,
                    value,
                    str(c.symbol.expr),
                    explain(value, c.symbol.expr, context.dummy),
                ),
            )
        frozen = tuple(sorted(values.values(), key=lambda f: f.position))
        if origin is None:
            first = group[0]
            reason = f"a literal size meets the dynamic {frozen[0].symbol} here"
            findings.append(
                Finding("shape-conflict", first.node, first.op_type, frozen, reason, meets=meets)
            )
            continue
        if origin.folded:
            kind = "folded-constant"
            part = "dim" if origin.part == "dim" else "value"
            what = "a dim" if part == "dim" else "values"
            reason = (
                f"constant {origin.tensor!r} has {what} of the export size, "
                f"broadcast against a dynamic dim at {meets[0]}"
            )
        else:
            kind, part = "frozen-shape", "value"
            reason = (
                f"a literal shape input makes a fixed size that meets a dynamic dim at {meets[0]}"
            )
        findings.append(
            Finding(
                kind,
                origin.node,
                origin.op_type,
                frozen,
                reason,
                input_index=origin.input_index,
                tensor=origin.tensor,
                part=part,
                meets=meets,
            )
        )
    return findings
