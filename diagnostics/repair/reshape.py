"""Repair a Reshape whose literal target froze dims of dynamic data.

Pattern: a `frozen-shape` finding on a Reshape with a constant target. Check: the
data's dims and the output the node should have had are known symbolically.
Rewrite, smallest first: `0` where the frozen position copies the same data dim
(not under `allowzero`), `-1` for one remaining dim when the element count proves
it, otherwise the frozen dims rebuilt from `Shape -> Gather -> Concat` of the data.
"""

from __future__ import annotations

from math import prod

import numpy as np

from ..analysis.dims import ONE, Expr
from ..findings import Finding
from .edit import Declined, GraphEdit, inputs, outputs
from .results import Change
from .size_nodes import vector, vector_text


def repair_reshape(edit: GraphEdit, finding: Finding, index: int) -> Change | Declined:
    node = edit.node(finding.node)
    if isinstance(node, Declined):
        return node
    target = edit.constant(inputs(node)[1])
    data, out = edit.shapes.get(inputs(node)[0]), edit.shapes.get(outputs(node)[0])
    if target is None or target.ndim != 1:
        return _rebuild_computed(edit, node, finding, index, data, out)
    if data is None or any(d.expr is None for d in data):
        return Declined("the data shape is not known symbolically")
    if out is None or len(out) != len(target) or any(d.expr is None for d in out):
        unsized = sorted(n for n, s in edit.symbols.items() if s.dummy is None and "+" not in n)
        hint = (f" (the export sizes of {', '.join(unsized)} are not recorded: --dummy "
                + ",".join(f"{n}=N" for n in unsized) + " gives them)") if unsized else ""
        return Declined("the target cannot be rebuilt: the output it should give is not known"
                        + hint)
    frozen = [f.position for f in finding.frozen]
    if any(f.symbol is None for f in finding.frozen):
        return Declined("the target cannot be rebuilt: no symbol fits its literal dims")
    allowzero = bool(node.attributes.get_int("allowzero", 0))
    literal = [int(v) for v in target]
    new: list[int | Expr] = list(literal)
    for i in frozen:
        if not allowzero and i < len(data) and data[i].expr == out[i].expr:
            new[i] = 0
    rest = [i for i in frozen if new[i] != 0]
    if len(rest) == 1 and -1 not in literal and not (allowzero and 0 in literal):
        trial = list(new)
        trial[rest[0]] = -1
        if _inferred(data, out, trial, rest[0]) == out[rest[0]].expr:
            new = trial
            rest = []
    before = vector_text(literal)
    if not rest:
        name = edit.add_initializer(inputs(node)[1] + "_repaired", np.array(new, np.int64))
        action = "literal target: " + _how(new, literal)
        added: tuple[str, ...] = ()
    else:
        for i in rest:
            new[i] = out[i].expr
        built = vector(edit, new, node.name, data=inputs(node)[0])
        if isinstance(built, Declined):
            return built
        name = built
        added = edit.added()
        action = "target rebuilt from Shape -> Gather -> Concat of the data"
    old = inputs(node)[1]
    edit.set_input(node, 1, name)
    edit.release(old)
    after = vector_text(new)
    edit.note(node, f"target {before} -> {after} ({action})")
    return Change(index, node.name, node.op_type, action, before, after, added)


def _rebuild_computed(
    edit: GraphEdit, node, finding: Finding, index: int, data, out
) -> Change | Declined:
    """A computed target holding a literal (`Concat([4], seq, 12)` traced at batch 1): the
    whole target rebuilt from the output it should give, its sizes read off the data."""
    if (data is None or out is None or any(d.expr is None for d in [*data, *out])
            or any(f.symbol is None for f in finding.frozen)):
        return Declined("the target is computed and the output it should give is not known")
    allowzero = bool(node.attributes.get_int("allowzero", 0))
    new: list[int | Expr] = [
        0 if not allowzero and i < len(data) and data[i].expr == d.expr and d.expr.powers
        else d.literal if d.literal is not None else d.expr
        for i, d in enumerate(out)
    ]
    name = vector(edit, new, node.name, data=inputs(node)[0])
    if isinstance(name, Declined):
        return name
    added = edit.added()
    old = inputs(node)[1]
    edit.set_input(node, 1, name)
    edit.release(old)
    before, after = finding.frozen_text, vector_text(new)
    action = "computed target rebuilt from Shape -> Gather -> Concat of the data"
    edit.note(node, f"target {before} -> {after} ({action})")
    return Change(index, node.name, node.op_type, action, before, after, added)


def _inferred(data, out, trial: list, hole: int) -> Expr | None:
    numel = prod((d.expr for d in data), start=ONE)
    known = [out[i].expr if v == 0 else Expr.of(v) for i, v in enumerate(trial) if i != hole]
    inferred = numel / prod(known, start=ONE)
    return inferred if inferred.valid else None


def _how(new: list, literal: list[int]) -> str:
    parts = []
    if any(n == 0 and v != 0 for n, v in zip(new, literal, strict=True)):
        parts.append("0 copies the input dim")
    if any(n == -1 and v != -1 for n, v in zip(new, literal, strict=True)):
        parts.append("-1 infers one dim")
    return ", ".join(parts)

