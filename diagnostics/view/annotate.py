"""The two models Netron shows: an annotated copy, and the neighbourhood of one node.

Each flagged node carries its finding in `metadata_props` and `doc_string` (Netron's node
sidebar shows both); the neighbourhood keeps a node's producers, consumers and the shape
chain that feeds it. Both are new light models: weights are never read or copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import onnx

from ..errors import ServeError
from ..findings import Finding, Report, SymbolInfo

PREFIX = "subgraft."
# Inline tensors above this are served without their values: Netron draws the graph from
# names, types and shapes; the values are only read when one clicks a weight.
MAX_INLINE_BYTES = 64 * 1024
# The shape chain of a frozen node stops at Shape/Size (where the data enters) or here.
_MAX_CHAIN = 40
_SHAPE_SOURCES = {"Shape", "Size"}


# -- annotation ----------------------------------------------------------------------------


def annotate(
    model: onnx.ModelProto, report: Report, repairs: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """A light copy of `model` whose flagged nodes (and static inputs) carry their finding.

    The copy keeps external data references and drops the values of large inline tensors,
    so it stays small whatever the size of the model; `model` itself is not modified.
    """
    copy = _light_copy(model)
    graph = copy.graph
    nodes = {node.name: node for node in graph.node if node.name}
    inputs = {value.name: value for value in graph.input}
    for index, finding in enumerate(report.findings):
        target = nodes.get(finding.node) or inputs.get(finding.node)
        if target is None:
            continue
        props = finding_props(index, finding, report.symbols, (repairs or {}).get(finding.node))
        existing = {p.key: p for p in target.metadata_props}
        for key, value in props.items():
            if key in existing:  # a node flagged twice: keep both findings
                existing[key].value += f"\n{value}"
            else:
                target.metadata_props.add(key=key, value=value)
        summary = _doc(index, finding, props)
        target.doc_string = f"{summary}\n\n{target.doc_string}" if target.doc_string else summary
    flagged = len({f.node for f in report.findings})
    copy.metadata_props.add(
        key=f"{PREFIX}findings",
        value=f"{len(report.findings)} finding(s) on {flagged} node(s); find them by name "
        "(Ctrl+F) or by searching for 'subgraft'",
    )
    return copy


def finding_props(
    index: int, finding: Finding, symbols: Iterable[SymbolInfo], repair: str | None = None
) -> dict[str, str]:
    """The `metadata_props` of one flagged node, keys prefixed `subgraft.`."""
    props = {
        "finding": f"#{index} {finding.kind}",
        "kind": finding.kind,
        "frozen": _frozen(finding),
        "origin": "; ".join(dict.fromkeys(f.reason for f in finding.frozen)) or finding.reason,
        "reason": finding.reason,
        "source": str(finding.source),
    }
    if finding.source.location:
        props["location"] = finding.source.location
    if finding.source.code:
        props["code"] = finding.source.code
    if finding.meets:
        props["meets"] = ", ".join(finding.meets)
    props["repair" if repair else "suggested repair"] = repair or suggest_repair(finding, symbols)
    return {f"{PREFIX}{key}": value for key, value in props.items()}


def suggest_repair(finding: Finding, symbols: Iterable[SymbolInfo]) -> str:
    """One line: what to compute instead of each frozen value."""
    how = {s.name: f"Shape({s.input})[{s.axis}]" for s in symbols}

    def expression(symbol: str | None) -> str:
        if not symbol:
            return "?"
        parts = [how.get(part, part) for part in symbol.split("*")]
        return f"{symbol} = {' * '.join(parts)}"

    if finding.kind == "static-input":
        axes = ", ".join(f"axis {f.position} -> {f.symbol or '?'}" for f in finding.frozen)
        return f"re-export with dynamic axes for input {finding.node!r}: {axes}"
    values = ", ".join(
        f"[{f.position}] {f.value} -> {expression(f.symbol)}" for f in finding.frozen
    )
    where = f"input {finding.input_index}" if finding.input_index is not None else "the shape"
    if finding.tensor:
        where += f" ({finding.tensor})"
    verb = "recompute" if finding.kind == "folded-constant" else "replace in"
    return f"{verb} {where}: {values or finding.reason}; or run `python -m diagnostics repair`"


def _frozen(finding: Finding) -> str:
    where = ""
    if finding.input_index is not None:
        where = f"input {finding.input_index}"
        if finding.tensor:
            where += f" ({finding.tensor})"
        where += f", {'axes' if finding.part == 'dim' else 'elements'}: "
    return where + (finding.frozen_text or "-")


def _doc(index: int, finding: Finding, props: Mapping[str, str]) -> str:
    lines = [f"subgraft finding #{index}: {finding.kind}", finding.reason]
    for key in ("frozen", "source", "suggested repair", "repair"):
        if f"{PREFIX}{key}" in props:
            lines.append(f"{key}: {props[PREFIX + key]}")
    return "\n".join(lines)


def _light_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """Everything but the values of large inline tensors, without copying those values."""
    copy = onnx.ModelProto()
    _copy_fields(model, copy, skip={"graph"})
    _copy_fields(model.graph, copy.graph, skip={"initializer"})
    for tensor in model.graph.initializer:
        copy.graph.initializer.append(_light_tensor(tensor))
    return copy


def _light_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.ByteSize() <= MAX_INLINE_BYTES:
        return tensor
    light = onnx.TensorProto()
    light.name, light.data_type = tensor.name, tensor.data_type
    light.dims.extend(tensor.dims)
    note = f"values not served by subgraft ({tensor.ByteSize():,} bytes inline in the file)"
    light.doc_string = f"{tensor.doc_string}\n{note}" if tensor.doc_string else note
    return light


def _copy_fields(source, target, skip: set[str]) -> None:  # protobuf messages
    for descriptor, value in source.ListFields():
        if descriptor.name in skip:
            continue
        slot = getattr(target, descriptor.name)
        if hasattr(slot, "extend"):
            slot.extend(value)
        elif hasattr(slot, "CopyFrom"):
            slot.CopyFrom(value)
        else:
            setattr(target, descriptor.name, value)


# -- neighbourhood -------------------------------------------------------------------------


def neighbourhood(
    model: onnx.ModelProto, focus: str, report: Report | None = None, hops: int = 2
) -> onnx.ModelProto:
    """The nodes `hops` steps up and down from `focus`, plus the shape chain that feeds it.

    `focus` is a node name, or a graph input (its consumers are the centre). The result is
    a valid model: cut edges become typed graph inputs and outputs, and large or external
    initializers become inputs too (their values are not needed to see the failure).
    """
    graph = model.graph
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    by_name = {node.name: i for i, node in enumerate(nodes) if node.name}
    if focus in by_name:
        centre = {by_name[focus]}
    elif focus in {value.name for value in graph.input}:
        centre = set(consumers.get(focus, []))
    else:
        raise ServeError(f"no node or input named {focus!r} in the graph")

    keep = set(centre)
    frontier = set(centre)
    for _ in range(hops):
        frontier = {producer[n] for i in frontier for n in nodes[i].input if n in producer}
        keep |= frontier
    frontier = set(centre)
    for _ in range(hops):
        frontier = {c for i in frontier for out in nodes[i].output for c in consumers.get(out, [])}
        keep |= frontier
    keep |= _shape_chain(nodes, producer, centre, _chain_roots(report, focus))
    return _extract(model, [nodes[i] for i in sorted(keep)], focus)


def _chain_roots(report: Report | None, focus: str) -> set[str] | None:
    """The tensors holding the frozen values of `focus`; None: every input of the centre."""
    if report is None:
        return None
    tensors = {f.tensor for f in report.findings if f.node == focus and f.tensor}
    return tensors or None


def _shape_chain(
    nodes: list[onnx.NodeProto],
    producer: Mapping[str, int],
    centre: set[int],
    roots: set[str] | None,
) -> set[int]:
    """Producers of the frozen tensor back to where the data's shape is read (Shape, Size)."""
    if roots is None:
        roots = {name for i in centre for name in nodes[i].input}
    chain: set[int] = set()
    queue = [producer[name] for name in roots if name in producer]
    while queue and len(chain) < _MAX_CHAIN:
        i = queue.pop(0)
        if i in chain or i in centre:
            continue
        chain.add(i)
        if nodes[i].op_type not in _SHAPE_SOURCES:
            queue.extend(producer[name] for name in nodes[i].input if name in producer)
    return chain


def _extract(model: onnx.ModelProto, kept: list[onnx.NodeProto], focus: str) -> onnx.ModelProto:
    graph = model.graph
    types = _value_types(model)
    initializers = {t.name: t for t in graph.initializer}
    produced = {out for node in kept for out in node.output if out}
    used = [name for node in kept for name in node.input if name]
    kept_ids = {id(node) for node in kept}
    used_outside = {
        name for node in graph.node if id(node) not in kept_ids for name in node.input
    } | {value.name for value in graph.output}

    sub = onnx.GraphProto(name=f"neighbourhood of {focus}")
    sub.node.extend(kept)
    for name in dict.fromkeys(used):
        if name in produced:
            continue
        tensor = initializers.get(name)
        if tensor is not None and _has_values(tensor):
            sub.initializer.append(tensor)
        else:
            sub.input.append(types.get(name) or _untyped(name, tensor))
    consumed_inside = set(used)
    for name in dict.fromkeys(out for node in kept for out in node.output if out):
        if name in used_outside or name not in consumed_inside:
            sub.output.append(types.get(name) or _untyped(name, None))

    result = onnx.ModelProto()
    _copy_fields(model, result, skip={"graph", "metadata_props"})
    result.graph.CopyFrom(sub)
    result.metadata_props.add(key=f"{PREFIX}focus", value=focus)
    return result


_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def _has_values(tensor: onnx.TensorProto) -> bool:
    """Inline values are here (not external, not dropped by `annotate`)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return False
    if 0 in tensor.dims:
        return True
    return any(len(getattr(tensor, name)) for name in _DATA_FIELDS)


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every tensor's type: declared, or inferred on the weightless model."""
    types: dict[str, onnx.ValueInfoProto] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a nicety: untyped edges still render
        inferred = model.graph
    for value in [*inferred.value_info, *model.graph.input, *model.graph.output]:
        if value.type.HasField("tensor_type"):
            info = onnx.ValueInfoProto()
            info.name = value.name
            info.type.CopyFrom(value.type)
            types[value.name] = info
    for tensor in model.graph.initializer:
        if tensor.name not in types:
            types[tensor.name] = onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)
            )
    return types


def _untyped(name: str, tensor: onnx.TensorProto | None) -> onnx.ValueInfoProto:
    elem = tensor.data_type if tensor is not None else onnx.TensorProto.FLOAT
    return onnx.helper.make_tensor_value_info(name, elem, None)
