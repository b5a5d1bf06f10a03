"""`repair`: rewrite what `check` found so the graph runs at every shape, and prove it.

Each finding gets the smallest rewrite its rule can prove (`repair_reshape`,
`repair_sizes`, `repair_constants`) or a refusal with the reason. Static inputs
become symbolic only when nothing inside is left frozen: `check` is re-run on the
repaired graph to prove it. The result is then written (temp file, then move) and
verified against the original in onnxruntime (`verify`). Never prints.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx

from .checker import check
from .errors import DiagnosticsError
from .findings import Finding, Report
from .inputs import read_signature
from .loading import LoadedModel, load_model
from .repair_constants import repair_constant
from .repair_graph import REPAIR_KEY, Declined, GraphEdit
from .repair_reshape import repair_reshape
from .repair_results import Change, Refusal, RepairReport, RepairResult
from .repair_sizes import OPS, repair_sizes
from .shape_algebra import Shape
from .symbols import Interpreter
from .verify import verify, verify_shapes

Rule = Callable[[GraphEdit, Finding, int], Change]


class OutputPathError(DiagnosticsError):
    """The output path is missing, or is the input itself."""


def repair(
    source: str | os.PathLike[str] | onnx.ModelProto,
    output: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    dummy: dict[str, int] | None = None,
    shapes: Sequence[tuple[int, int]] | None = None,
) -> RepairReport:
    """Repair the frozen shapes `check` finds; write to `output` unless `dry_run`; verify.

    Args:
        output: where to write (never the input). None: verify in memory, write nothing.
        dry_run: plan and prove the plan statically; no writing, no onnxruntime.
        dummy: export sizes by role, as for `check`.
        shapes: extra (batch, sequence) shapes to verify at, besides the built-in ones.

    Raises:
        DiagnosticsError: bad input, or an output path that is the input.
    """
    loaded = load_model(source)
    out_path = _output_path(output, loaded) if output is not None and not dry_run else None
    report = check(loaded.model if loaded.path is None else loaded.path, dummy=dummy)
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
    if out_path is not None:
        notes += _write(result.model, out_path, loaded)
        repaired = load_model(out_path)
    else:
        repaired = LoadedModel(_with_weights(result.model, loaded), None, "inline")
    original = loaded if loaded.path is not None else LoadedModel(loaded.model, None, "inline")
    sizes = {**(dummy or {}), **report.dummy}  # every symbol's given size, for any model
    checked = verify(original, repaired, sizes, verify_shapes(report.dummy, shapes or ()))
    return RepairReport(
        output=str(out_path) if out_path else None,
        dry_run=False,
        verification=checked,
        notes=tuple(notes),
        **base,
    )


def repair_pass(
    model: onnx.ModelProto,
    report: Report,
    shapes: dict[str, Shape],
    read_tensor: Callable,
) -> RepairResult:
    """Apply a rule to every finding of `report`, on a copy of `model`."""
    edit = GraphEdit(copy.deepcopy(model), shapes, {s.name: s for s in report.symbols}, read_tensor)
    changes: list[Change] = []
    refusals: list[Refusal] = []
    for index, finding in enumerate(report.findings):
        if finding.kind == "static-input":
            continue
        rule, why = _rule(finding)
        try:
            if rule is None:
                raise Declined(why)
            changes.append(rule(edit, finding, index))
        except Declined as exc:
            refusals.append(Refusal(index, finding.node, finding.op_type, finding.kind, str(exc)))
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


def _rule(finding: Finding) -> tuple[Rule | None, str]:
    if finding.kind == "folded-constant":
        return repair_constant, ""
    if finding.kind == "frozen-shape" and finding.op_type == "Reshape":
        return repair_reshape, ""
    if finding.kind == "frozen-shape" and finding.op_type in OPS:
        return repair_sizes, ""
    if finding.kind == "shape-conflict":
        return None, "the literal's origin is not known: nothing that can be rewritten"
    return None, f"no rewrite rule for {finding.kind} on {finding.op_type or 'an input'}"


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
            if value.symbolic and value.expr.coef == 1 and len(value.expr.powers) == 1:
                if value.expr.powers[0][1] == 1:
                    dim.dim_param = value.expr.powers[0][0]
                    continue
            if value.symbolic or value.expr is None:
                dim.Clear()


def _shapes(
    model: onnx.ModelProto, read_tensor: Callable, dummy: dict[str, int] | None
) -> dict[str, Shape]:
    """The symbolic shapes `check` propagates, with each flagged node's should-be output."""
    from .frozen import find_frozen

    signature = read_signature(model, dummy)
    sizes = {s.name: s.dummy for s in signature.symbols if s.dummy is not None}
    interpreter = Interpreter(model.graph, read_tensor, model, sizes=sizes)
    for name, dims in signature.seeds.items():
        interpreter.set_input(name, dims)
    find_frozen(interpreter, model.graph, interpreter.sizes)
    return interpreter.shapes


# -- files at the edge ---------------------------------------------------------------------------


def _output_path(output: str | os.PathLike[str], loaded: LoadedModel) -> Path:
    path = Path(output)
    if path.is_dir():
        path = path / "model.onnx"
    if loaded.path is not None and path.resolve() == loaded.path.resolve():
        raise OutputPathError(f"{path}: refusing to overwrite the input; name another file")
    return path


def _write(model: onnx.ModelProto, path: Path, loaded: LoadedModel) -> list[str]:
    """Write atomically; external data stays loadable from the output's directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model)
    notes = []
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    external = loaded.weights != "inline" and loaded.path is not None
    same_dir = external and path.parent.resolve() == loaded.path.parent.resolve()
    try:
        if external and not same_dir and loaded.weights == "external":
            onnx.load_external_data_for_model(model, str(loaded.path.parent))
            data = path.with_name(path.name + ".data")
            if data.exists():
                data.unlink()
            onnx.save_model(
                model,
                str(tmp),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data.name,
            )
            notes.append(f"weights written to {data.name} beside the output")
        else:
            if external and not same_dir:
                _relocate(model, loaded.path.parent, path.parent)
                notes.append("weights not found: the output points at where they should be")
            elif same_dir:
                notes.append("the output reads the original's external data file")
            onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return notes


def _relocate(model: onnx.ModelProto, old: Path, new: Path) -> None:
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = os.path.relpath(old.resolve() / entry.value, new.resolve())


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
