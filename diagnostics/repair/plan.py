"""`repair`: rewrite what `check` found so the graph runs at every shape, and prove it.

Each finding gets the smallest rewrite its rule can prove (`repair_reshape`,
`repair_sizes`, `repair_constants`) or a refusal with the reason. Static inputs
become symbolic only when nothing inside is left frozen: `check` is re-run on the
repaired graph to prove it. The result is staged beside the output, verified
against the original in onnxruntime (`verify`), and moved into place only when all
of it is proved: a repair that is not proved writes nothing (an export traced at a
batch of 1 is often why: its note says so). Never prints.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import onnx

from .. import atomic
from ..analysis.dims import Shape
from ..analysis.frozen import interpret
from ..analysis.signature import read_signature
from ..analysis.state import misfit
from ..checker import check, memory_budget
from ..errors import DiagnosticsError, OutputFileError
from ..findings import Finding, Report
from ..loading import LoadedModel, load_model
from ..probe.given import load_feeds
from .constants import repair_constant
from .edit import REPAIR_KEY, Declined, GraphEdit, Rule
from .reshape import repair_reshape
from .results import Change, Refusal, RepairReport, RepairResult
from .sizes import OPS, repair_sizes
from .verify import verify, verify_shapes

BATCH_OF_ONE = (
    "the export's batch was 1: a 1 in a frozen shape may be the batch or a real 1, and "
    "the graph cannot always tell them apart; export again with a batch of 2 or more"
)
UNPROVEN = "written although the repair is not proved (--keep-failed): do not ship it"


class OutputPathError(DiagnosticsError):
    """The output path is missing, or is the input itself."""


def repair(
    source: str | os.PathLike[str] | onnx.ModelProto,
    output: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    dummy: dict[str, int] | None = None,
    shapes: Sequence[tuple[int, int]] | None = None,
    keep_failed: bool = False,
    expect: dict[str, tuple[int | str, ...]] | None = None,
    inputs: Sequence | None = None,
    max_memory: int | str | None = None,
) -> RepairReport:
    """Repair the frozen shapes `check` finds; write to `output` unless `dry_run`; verify.

    Args:
        output: where to write (never the input). None: verify in memory, write nothing.
        dry_run: plan and prove the plan statically; no writing, no onnxruntime.
        dummy: export sizes by role, as for `check`.
        shapes: extra (batch, sequence) shapes to verify at, besides the built-in ones.
        keep_failed: write the output even when the repair is not proved (refusals,
            frozen shapes left, or a failed verification); by default nothing is written then.
        expect: the input dims the user expects, as for `check`.
        inputs: verify on these inputs (`.npz` paths or dicts) instead of built ones.
        max_memory: the most bytes one input may need, as for `check`.

    Raises:
        DiagnosticsError: bad input, or an output path that is the input.
    """
    budget = memory_budget(max_memory)
    loaded = load_model(source)
    feeds = load_feeds(loaded.model, inputs, budget) if inputs else ()
    out_path = _output_path(output, loaded) if output is not None and not dry_run else None
    report = check(loaded.model if loaded.path is None else loaded.path, dummy=dummy,
                   expect=expect)
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
    if dry_run:
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
    trials = verify_shapes(report.dummy, shapes or (), report.limits.get("sequence"))
    if out_path is None:
        repaired = LoadedModel(_with_weights(result.model, loaded), None, "inline")
        checked = verify(original, repaired, sizes, trials, feeds, budget)
        return RepairReport(
            output=None, dry_run=False, verification=checked, notes=tuple(notes), **base
        )
    staged = atomic.staged_name(out_path, "staged")
    with atomic.output_folder(out_path.parent):  # a new folder goes again if nothing is written
        atomic.remove_abandoned(out_path, data_files)
        try:
            written = _write(result.model, staged, loaded, out_path.name)
            checked = verify(original, load_model(staged), sizes, trials, feeds, budget)
            outcome = RepairReport(
                output=None, dry_run=False, verification=checked, notes=tuple(notes), **base
            )
            if outcome.ok or keep_failed:
                atomic.commit_file(staged, out_path)  # the one step that switches model + data
                written += [] if outcome.ok else [UNPROVEN]
                return replace(outcome, output=str(out_path), notes=(*notes, *written))
        finally:
            _discard(staged)
            atomic.remove_abandoned(out_path, data_files)  # data files no model reads now
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
    the copy as if it had not run (`GraphEdit.attempt`)."""
    edit = GraphEdit(copy.deepcopy(model), shapes, {s.name: s for s in report.symbols}, read_tensor)
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
    statics = [(i, f) for i, f in enumerate(report.findings) if f.kind == "static-input"]
    if statics:
        done, refused = _free_inputs(edit.model, statics, refusals, report)
        changes += done
        refusals += refused
    modified = bool(changes)
    if modified:
        entry = edit.model.metadata_props.add()
        entry.key, entry.value = REPAIR_KEY, f"{len(changes)} change(s), {len(refusals)} refused"
    return RepairResult(edit.model, modified, tuple(changes), tuple(refusals))


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


# -- files at the edge ---------------------------------------------------------------------------


def _output_path(output: str | os.PathLike[str], loaded: LoadedModel) -> Path:
    path = Path(output)
    if path.is_dir():
        path = path / "model.onnx"
    if loaded.path is not None and path.resolve() == loaded.path.resolve():
        raise OutputPathError(f"{path}: refusing to overwrite the input; name another file")
    return path


def _write(model: onnx.ModelProto, path: Path, loaded: LoadedModel, final: str) -> list[str]:
    """Write the staged model `path` for the output named `final` in the same folder.

    Weights that must travel are written once, under a name that carries their hash
    (`atomic.hashed_data_name`), and the staged model reads them there: committing is
    then one rename of the model, and the model it replaces keeps its own data file.
    """
    model = copy.deepcopy(model)
    notes = []
    external = loaded.weights != "inline" and loaded.path is not None
    same_dir = external and path.parent.resolve() == loaded.path.parent.resolve()
    data = atomic.staged_name(path.with_name(final), "data")
    try:
        if external and not same_dir and loaded.weights == "external":
            onnx.load_external_data_for_model(model, str(loaded.path.parent))
            onnx.save_model(model, str(path), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=data.name)
            model = onnx.load(str(path), load_external_data=False)
            hashed = atomic.hashed_data_name(final, data)
            _point_data(model, data.name, hashed)
            if (path.parent / hashed).is_file():  # the same weights are already there
                data.unlink()
            else:
                atomic.commit_file(data, path.parent / hashed)
            onnx.save_model(model, str(path))
            notes.append(f"weights written to {hashed} beside the output")
        else:
            if external and not same_dir:  # never a location outside the output's folder
                names = ", ".join(sorted(loaded.missing)) or "its data file"
                notes.append(f"weights not found: the output reads {names} beside it; put "
                             "the original's weights there")
            elif same_dir:
                notes.append("the output reads the original's external data file")
            onnx.save_model(model, str(path))
    except OSError as exc:
        raise OutputFileError(
            f"cannot write {path.with_name(final)}: {atomic.os_reason(exc)}; nothing was written"
        ) from None
    finally:
        if data.exists():
            data.unlink()
    return notes


def data_files(path: Path) -> set[str] | None:
    """The external data files the model at `path` reads (None: it cannot be read)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a file we did not write, or a cut one: it may read anything
        return None
    return {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
            if entry.key == "location"}


def _point_data(model: onnx.ModelProto, old: str, new: str) -> None:
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new


def _discard(staged: Path) -> None:
    if staged.exists():
        staged.unlink()


def _with_weights(model: onnx.ModelProto, loaded: LoadedModel) -> onnx.ModelProto:
    if loaded.weights != "external" or loaded.path is None:
        return model
    model = copy.deepcopy(model)
    onnx.load_external_data_for_model(model, str(loaded.path.parent))
    return model


def _dim_text(dim: onnx.TensorShapeProto.Dimension) -> str:
    return str(dim.dim_value) if dim.HasField("dim_value") else (dim.dim_param or "?")


def _list(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"
