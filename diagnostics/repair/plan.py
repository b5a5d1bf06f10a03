"""`repair`: rewrite what `check` found so the graph runs at every shape, and prove it.

Each finding gets the smallest rewrite its rule can prove (`repair_reshape`,
`repair_sizes`, `repair_constants`) or a refusal with the reason. Static inputs
become symbolic only when nothing inside is left frozen: `check` is re-run on the
repaired graph to prove it. The result is staged beside the output (`write`),
verified against the original in onnxruntime (`verify`), and moved into place only
when all of it is proved: a repair that is not proved writes nothing (an export
traced at a batch of 1 is often why: its note says so). Every choice comes in one
`RepairOptions`, checked before any work. Never prints.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import onnx
import onnx_ir as ir

from ..analysis.dims import Shape
from ..analysis.frozen import interpret
from ..analysis.signature import read_signature
from ..analysis.state import misfit
from ..checker import check
from ..findings import Finding, Report
from ..loading import LoadedModel, load_model
from ..probe.given import load_feeds
from . import write
from .constants import repair_constant
from .edit import REPAIR_KEY, Declined, GraphEdit, Rule, to_proto
from .options import RepairOptions
from .reshape import repair_reshape
from .results import Change, Refusal, RepairReport, RepairResult
from .sizes import OPS, repair_sizes
from .verify import verify, verify_shapes

BATCH_OF_ONE = (
    "the export's batch was 1: a 1 in a frozen shape may be the batch or a real 1, and "
    "the graph cannot always tell them apart; export again with a batch of 2 or more"
)
UNPROVEN = "written although the repair is not proved (--keep-failed): do not ship it"


def repair(
    source: str | os.PathLike[str] | onnx.ModelProto,
    output: str | os.PathLike[str] | None = None,
    *,
    options: RepairOptions | None = None,
    **fields: Any,
) -> RepairReport:
    """Repair the frozen shapes `check` finds; write to `output` unless `dry_run`; verify.

    Args:
        output, fields: the fields of `RepairOptions` (`repair(path, out, dummy={...},
            keep_failed=True)`); or all of them as `options`, not both.

    Raises:
        DiagnosticsError: a bad option (before any work), bad input, or an output path
            that is the input.
    """
    options = _options(output, options, fields)
    dummy = options.dummy
    loaded = load_model(source)
    feeds = load_feeds(loaded.model, options.inputs, options.budget) if options.inputs else ()
    out_path = (write.output_path(options.output, loaded)
                if options.output is not None and not options.dry_run else None)
    report = check(loaded.model if loaded.path is None else loaded.path, dummy=dummy,
                   expect=options.expect)
    batch_of_one = _batch_of_one(report)
    shapes_now = _shapes(loaded.model, loaded.read_tensor, dummy)
    result = repair_pass(loaded.model, report, shapes_now, loaded.read_tensor)
    remaining = check(result.model, dummy=report.dummy).findings if result.modified else ()
    if not report.findings:
        remaining = ()
    notes = []
    if loaded.weights == "missing":
        notes.append("weights not found: the repair is static only and cannot be verified")
    base = dict(
        model=loaded.name,
        dummy=report.dummy,
        findings=report.findings,
        changes=result.changes,
        refusals=result.refusals,
        remaining=tuple(remaining),
        repaired=result.model,
    )
    if options.dry_run:
        return RepairReport(
            output=None, dry_run=True, verification=None, notes=tuple(notes), **base
        )
    if not result.modified:
        notes.append("nothing written" if report.findings else "nothing to repair; nothing written")
        return RepairReport(
            output=None, dry_run=False, verification=None, notes=tuple(notes), **base
        )
    original = loaded if loaded.path is not None else LoadedModel(loaded.model, None, "inline")
    sizes = {**(dummy or {}), **report.dummy}  # every symbol's given size, for any model
    trials = verify_shapes(report.dummy, options.shapes or (), report.limits.get("sequence"))
    budget = options.budget
    if out_path is None:
        repaired = LoadedModel(write.with_weights(result.model, loaded), None, "inline")
        checked = verify(original, repaired, sizes, trials, feeds, budget)
        return RepairReport(
            output=None, dry_run=False, verification=checked, notes=tuple(notes), **base
        )
    with write.staging(out_path) as staged:
        written = write.write_staged(result.model, staged, loaded, out_path.name)
        checked = verify(original, load_model(staged), sizes, trials, feeds, budget)
        outcome = RepairReport(
            output=None, dry_run=False, verification=checked, notes=tuple(notes), **base
        )
        if outcome.ok or options.keep_failed:
            write.commit(staged, out_path)
            written += [] if outcome.ok else [UNPROVEN]
            return replace(outcome, output=str(out_path), notes=(*notes, *written))
    why = ["nothing written: the repair is not proved", *([BATCH_OF_ONE] if batch_of_one else [])]
    return replace(outcome, notes=(*notes, *why))


def repair_pass(
    model: onnx.ModelProto,
    report: Report,
    shapes: dict[str, Shape],
    read_tensor: Callable,
) -> RepairResult:
    """Apply a rule to every finding of `report`, on a copy of `model`; a rule that
    declines returns `Declined(reason)`, which becomes the finding's refusal, and leaves
    the copy as if it had not run (`GraphEdit.attempt`).

    The edit works on `ir.from_proto(model)`, which shares `model`'s tensors and changes
    nothing of it; the repaired model is written back in `model`'s layout (`to_proto`),
    or is a copy of `model` when no change was kept."""
    edit = GraphEdit(ir.from_proto(model), shapes, {s.name: s for s in report.symbols},
                     read_tensor)
    changes: list[Change] = []
    refusals: list[Refusal] = []
    for index, finding in enumerate(report.findings):
        if finding.kind == "static-input":
            continue
        rule = _rule(finding)
        try:
            outcome = rule if isinstance(rule, Declined) else edit.attempt(rule, finding, index)
        except (ArithmeticError, IndexError) as exc:  # values a hostile file chose: no rewrite
            outcome = Declined(misfit(exc))  # and, as for any decline, nothing of it is kept
        if isinstance(outcome, Declined):
            refusals.append(Refusal(index, finding.node, finding.op_type, finding.kind,
                                    outcome.reason))
        else:
            changes.append(outcome)
    edit.finish()
    repaired = to_proto(edit.model, model) if edit.kept else copy.deepcopy(model)
    statics = [(i, f) for i, f in enumerate(report.findings) if f.kind == "static-input"]
    if statics:
        done, refused = _free_inputs(repaired, statics, refusals, report)
        changes += done
        refusals += refused
    modified = bool(changes)
    if modified:
        entry = repaired.metadata_props.add()
        entry.key, entry.value = REPAIR_KEY, f"{len(changes)} change(s), {len(refusals)} refused"
    return RepairResult(repaired, modified, tuple(changes), tuple(refusals))


def _options(output: str | os.PathLike[str] | None, options: RepairOptions | None,
             fields: dict[str, Any]) -> RepairOptions:
    """`options`, or the one the arguments make (checked as it is made)."""
    if options is None:
        return RepairOptions(output=output, **fields)
    if output is not None or fields:
        raise TypeError("repair() takes options= or the options' fields, not both")
    return options


def _batch_of_one(report: Report) -> bool:
    return any((s.role == "batch" or s.name == "batch") and s.dummy == 1 for s in report.symbols)


def _rule(finding: Finding) -> Rule | Declined:
    if finding.kind == "folded-constant":
        return repair_constant
    if finding.kind == "frozen-shape" and finding.op_type == "Reshape":
        return repair_reshape
    if finding.kind == "frozen-shape" and finding.op_type in OPS:
        return repair_sizes
    if finding.kind == "shape-conflict":
        return Declined("the literal's origin is not known: nothing that can be rewritten")
    return Declined(f"no rewrite rule for {finding.kind} on {finding.op_type or 'an input'}")


def _free_inputs(
    model: onnx.ModelProto,
    statics: list[tuple[int, Finding]],
    refusals: list[Refusal],
    report: Report,
) -> tuple[list[Change], list[Refusal]]:
    """Make static text dims symbolic, only if the repaired graph then checks clean."""
    if refusals:
        why = (
            f"{len(refusals)} frozen use(s) inside are not repaired "
            f"(#{', #'.join(str(r.finding) for r in refusals[:5])}): it would fail inside"
        )
        return [], [Refusal(i, f.node, "", f.kind, why) for i, f in statics]
    trial = copy.deepcopy(model)
    inputs = {i.name: i for i in trial.graph.input}
    changes = []
    for index, finding in statics:
        dims = inputs[finding.node].type.tensor_type.shape.dim
        before = [_dim_text(d) for d in dims]
        for frozen in finding.frozen:
            dims[frozen.position].dim_param = frozen.symbol or f"{finding.node}_{frozen.position}"
        after = [_dim_text(d) for d in dims]
        changes.append(
            Change(index, finding.node, "", "input dims made symbolic", _list(before), _list(after))
        )
    _relabel_outputs(trial, report.dummy)
    del trial.graph.value_info[:]  # recorded at the dummy shape: stale now
    left = check(trial, dummy=report.dummy).findings
    if left:
        names = ", ".join(f.node for f in left[:3])
        why = f"with symbolic inputs, check still finds {len(left)} frozen use(s): {names}"
        return [], [Refusal(i, f.node, "", f.kind, why) for i, f in statics]
    model.CopyFrom(trial)
    return changes, []


def _relabel_outputs(model: onnx.ModelProto, dummy: dict[str, int]) -> None:
    shapes = _shapes(model, LoadedModel(model, None, "inline").read_tensor, dummy)
    for output in model.graph.output:
        dims = shapes.get(output.name)
        declared = output.type.tensor_type.shape.dim
        if dims is None or len(dims) != len(declared):
            continue
        for dim, value in zip(declared, dims, strict=True):
            if value.symbolic and value.expr.single is not None:
                dim.dim_param = value.expr.single
                continue
            if value.symbolic or value.expr is None:
                dim.Clear()


def _shapes(
    model: onnx.ModelProto, read_tensor: Callable, dummy: dict[str, int] | None
) -> dict[str, Shape]:
    """The symbolic shapes `check` propagates, with each flagged node's should-be output."""
    return interpret(model, read_tensor, read_signature(model, dummy))[0].shapes


def _dim_text(dim: onnx.TensorShapeProto.Dimension) -> str:
    return str(dim.dim_value) if dim.HasField("dim_value") else (dim.dim_param or "?")


def _list(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"
