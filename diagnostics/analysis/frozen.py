"""Find shapes frozen at export: literals where the data carries a symbolic dim.

Rules are pattern -> check, one per op family (`frozen_reshape`, `frozen_slice_resize`),
run while the symbols propagate: a rule that flags a node also gives the output the node
*should* have had, so one frozen Reshape is one finding, not a cascade. Expand, Tile,
ConstantOfShape, Range and folded constants are caught where their literal meets a symbol
(a `Conflict` carrying the literal's origin). A rule that cannot judge returns a `Skip`
with the reason; it never guesses. `interpret` is the entry: a model and its signature in,
the interpreter (shapes, derived sizes), findings and skips out.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from ..findings import Finding, FrozenValue, Skip
from .dims import Origin
from .frozen_common import Context, Rule, Verdict, explain
from .frozen_reshape import reshape_rule
from .frozen_slice_resize import resize_rule, slice_rule
from .state import Conflict, misfit
from .symbols import Interpreter


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


def interpret(model: onnx.ModelProto, read_tensor: Callable, signature
              ) -> tuple[Interpreter, list[Finding], list[Skip]]:
    """Propagate the signature's symbols (`inputs.read_signature`) through `model` and apply
    the rules: the interpreter (shapes, derived sizes), findings and skips."""
    sizes = {s.name: s.dummy for s in signature.symbols if s.dummy is not None}
    interpreter = Interpreter(model.graph, read_tensor, model, sizes=sizes)
    for name, dims in signature.seeds.items():
        interpreter.set_input(name, dims)
    found, skipped = find_frozen(interpreter, model.graph, interpreter.sizes)
    return interpreter, found, skipped


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


RULES: dict[str, Rule] = {"Reshape": reshape_rule, "Slice": slice_rule, "Resize": resize_rule}


def _from_conflicts(conflicts: list[Conflict], context: Context) -> list[Finding]:
    """Expand, Tile, ConstantOfShape, Range and folded constants: one finding per literal's
    origin (the node and input holding it), naming every node where it met a symbol."""
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
                    c.symbol.expr.sympy,
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
