"""The two models Netron shows: an annotated copy, and the neighbourhood of one node.

Each flagged node carries its finding in `metadata_props` and `doc_string` (Netron's node
sidebar shows both); the neighbourhood keeps a node's producers, consumers and the shape
chain that feeds it. Both are light models: weights are never read or copied.

The graph work is onnx-ir's: `ir.from_proto` wraps the loaded protos without copying them
(external tensors become `ir.ExternalTensor` references, never read, written back as the
same references), producers and consumers are the IR's use lists, and the neighbourhood is
an `ir.GraphView` of the kept nodes cloned into a graph of its own. Two parts stay on onnx,
where onnx-ir does worse: a withheld large inline tensor is a bare `TensorProto` (every
onnx-ir tensor writes its bytes), and the cut edges are typed by `onnx.shape_inference` on
the edges' ancestors (see `_edge_types`). The IR round trip is Python: on a 10,000-node
graph annotating, extracting and serializing take 0.8 s where the protobuf copy took 0.35 s,
and peak memory is the same but for onnx-ir's import (~30 MB, sympy). Ours: which nodes
to keep, and what the annotations say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import onnx
import onnx_ir as ir
import sympy

from ..compare.results import Divergence
from ..errors import ServeError
from ..findings import Finding, FrozenValue, Report, SymbolInfo

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
) -> ir.Model:
    """A light IR copy of `model` whose flagged nodes (and static inputs) carry their finding.

    The copy keeps external data references and drops the values of large inline tensors,
    so it stays small whatever the size of the model; `model` itself is not modified.
    """
    marks = []
    for index, finding in enumerate(report.findings):
        props = finding_props(index, finding, report.symbols, (repairs or {}).get(finding.node))
        marks.append((finding.node, props, _doc(index, finding, props)))
    flagged = len({f.node for f in report.findings})
    return mark(model, marks, "findings", (
        f"{len(report.findings)} finding(s) on {flagged} node(s); find them by name "
        "(Ctrl+F) or by searching for 'subgraft'"))


def mark(model: onnx.ModelProto, marks: Iterable[tuple[str, Mapping[str, str], str]],
         key: str, summary: str) -> ir.Model:
    """A light IR copy of `model` with each `(node or graph input, metadata_props, doc)` of
    `marks` on its target (a node marked twice keeps both), and `summary` in the model's
    `subgraft.<key>` metadata. Names that are not in the graph are skipped."""
    copy = _light_model(model)
    graph = copy.graph
    nodes = {node.name: node for node in graph if node.name}
    inputs = {value.name: value for value in graph.inputs}
    for name, props, doc in marks:
        target = nodes.get(name) or inputs.get(name)
        if target is None:
            continue
        for prop, value in props.items():
            old = target.metadata_props.get(prop)
            target.metadata_props[prop] = f"{old}\n{value}" if old is not None else value
        target.doc_string = f"{doc}\n\n{target.doc_string}" if target.doc_string else doc
    copy.metadata_props[f"{PREFIX}{key}"] = summary
    return copy


def divergence_marks(divergence: Divergence) -> list[tuple[str, dict[str, str], str]]:
    """What `compare` found, on each ONNX node of the first divergent module."""
    first = divergence
    where = f"{first.module or '<root>'} ({first.module_class})"
    inputs = "none aligned" if first.input_max_abs is None else f"{first.input_max_abs:.3g}"
    props = {
        "divergence": f"first divergent module: {where}",
        "error": f"max abs {first.max_abs:.3g}, relative {first.relative:.3g}, cosine "
                 f"{first.cosine:.6f}; its inputs max abs {inputs}",
        "cause": first.cause or "none shown (never guessed)",
    }
    if first.source:
        props["source"] = first.source
    if first.onnx_source:
        props["location"] = first.onnx_source
    props = {f"{PREFIX}{key}": value for key, value in props.items()}
    doc = "\n".join([f"subgraft: first divergent module {where}", props[PREFIX + "error"],
                     f"cause: {props[PREFIX + 'cause']}"])
    return [(name, props, doc) for name in first.onnx_nodes]


def _light_model(model: onnx.ModelProto) -> ir.Model:
    """`model` as an IR model that holds no large values: external tensors stay references
    (never read), and inline tensors over `MAX_INLINE_BYTES` keep their name, type and dims
    only. The protos of `model` are shared, not copied, and not modified."""
    light = ir.from_proto(model)
    for value in light.graph.initializers.values():
        tensor = value.const_value
        if isinstance(tensor, ir.ExternalTensor) or tensor is None:
            continue
        if _inline_bytes(tensor) > MAX_INLINE_BYTES:
            value.const_value = _Withheld(tensor)
    return light


def _inline_bytes(tensor: ir.TensorProtocol) -> int:
    """What the tensor takes in the file (as loaded, it is still its proto)."""
    if isinstance(tensor, ir.serde.TensorProtoTensor):
        return tensor.raw.ByteSize()
    return tensor.nbytes


class _Withheld(ir.serde.TensorProtoTensor):
    """A tensor that serializes as a large inline tensor's name, type and dims, without its
    values (they stay in the file). onnx-ir has no tensor without data (each of its tensors
    writes its bytes), so this is a bare `TensorProto`, wrapped as onnx-ir wraps a loaded one.
    """

    def __init__(self, tensor: ir.TensorProtocol) -> None:
        size = _inline_bytes(tensor)
        note = f"values not served by subgraft ({size:,} bytes inline in the file)"
        super().__init__(
            onnx.TensorProto(
                name=tensor.name,
                data_type=tensor.dtype.value,
                dims=tensor.shape.numpy(),
                doc_string=f"{tensor.doc_string}\n{note}" if tensor.doc_string else note,
            )
        )


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

    def expression(frozen: FrozenValue) -> str:
        if frozen.expr is None:  # no exact size known: name what it should be, if anything
            return frozen.symbol or "?"
        # The exact size with each input symbol read off its input: sums and floors too.
        text = sympy.sstr(frozen.expr.xreplace(
            {s: sympy.Symbol(how[s.name]) for s in frozen.expr.free_symbols if s.name in how}))
        return f"{frozen.symbol} = {text.replace('**', '^').replace('*', ' * ')}"

    if finding.kind == "static-input":
        axes = ", ".join(f"axis {f.position} -> {f.symbol or '?'}" for f in finding.frozen)
        return f"re-export with dynamic axes for input {finding.node!r}: {axes}"
    values = ", ".join(
        f"[{f.position}] {f.value} -> {expression(f)}" for f in finding.frozen
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


# -- neighbourhood -------------------------------------------------------------------------


def neighbourhood(
    model: ir.Model, focus: str, report: Report | None = None, hops: int = 2
) -> ir.Model:
    """The nodes `hops` steps up and down from `focus`, plus the shape chain that feeds it.

    `focus` is a node name, or a graph input (its consumers are the centre). The result is
    a new valid model (`model` is not modified): cut edges become typed graph inputs and
    outputs, and large or external initializers become inputs too (their values are not
    needed to see the failure).
    """
    graph = model.graph
    by_name = {node.name: node for node in graph if node.name}
    inputs = {value.name: value for value in graph.inputs}
    if focus in by_name:
        centre = {by_name[focus]}
    elif focus in inputs:
        centre = set(_consumers(inputs[focus], graph))
    else:
        raise ServeError(f"no node or input named {focus!r} in the graph")

    keep = set(centre)
    frontier = set(centre)
    for _ in range(hops):
        frontier = {p for node in frontier for v in node.inputs if (p := _producer(v, graph))}
        keep |= frontier
    frontier = set(centre)
    for _ in range(hops):
        frontier = {c for node in frontier for v in node.outputs for c in _consumers(v, graph)}
        keep |= frontier
    keep |= _shape_chain(graph, centre, _chain_roots(report, focus))
    order = {node: index for index, node in enumerate(graph)}
    return _extract(model, sorted(keep, key=order.__getitem__), focus)


def _producer(value: ir.Value | None, graph: ir.Graph) -> ir.Node | None:
    node = value.producer() if value is not None else None
    return node if node is not None and node.graph is graph else None


def _consumers(value: ir.Value, graph: ir.Graph) -> list[ir.Node]:
    """The nodes of `graph` (not of its subgraphs) that read `value`."""
    return [node for node in value.consumers() if node.graph is graph]


def _chain_roots(report: Report | None, focus: str) -> set[str] | None:
    """The tensors holding the frozen values of `focus`; None: every input of the centre."""
    if report is None:
        return None
    tensors = {f.tensor for f in report.findings if f.node == focus and f.tensor}
    return tensors or None


def _shape_chain(graph: ir.Graph, centre: set[ir.Node], roots: set[str] | None) -> set[ir.Node]:
    """Producers of the frozen tensor back to where the data's shape is read (Shape, Size)."""
    sources = [v for node in centre for v in node.inputs if v is not None]
    if roots is not None:
        sources = [v for v in dict.fromkeys(sources) if v.name in roots]
    chain: set[ir.Node] = set()
    queue = [p for v in sources if (p := _producer(v, graph))]
    while queue and len(chain) < _MAX_CHAIN:
        node = queue.pop(0)
        if node in chain or node in centre:
            continue
        chain.add(node)
        if node.op_type not in _SHAPE_SOURCES:
            queue.extend(p for v in node.inputs if (p := _producer(v, graph)))
    return chain


def _extract(model: ir.Model, kept: list[ir.Node], focus: str) -> ir.Model:
    """The kept nodes as a model of their own: a clone, so `model` keeps its nodes."""
    kept_set = set(kept)
    used = [v for node in kept for v in _reads(node, model.graph) if v.name]
    cut, initializers = [], []
    for value in dict.fromkeys(used):
        if _producer(value, model.graph) in kept_set:
            continue
        has_values = value.is_initializer() and _has_values(value.const_value)
        (initializers if has_values else cut).append(value)
    consumed_inside = set(used)
    outputs = [
        value
        for node in kept
        for value in node.outputs
        if value.name
        and (
            value not in consumed_inside
            or value.is_graph_output()
            or any(c not in kept_set for c in _consumers(value, model.graph))
        )
    ]
    view = ir.GraphView(
        cut,
        outputs,
        nodes=kept,
        initializers=initializers,
        opset_imports=model.graph.opset_imports,
        name=f"neighbourhood of {focus}",
    )
    types = _edge_types(model, [v for v in [*cut, *outputs] if v.type is None])
    sub = view.clone()  # new nodes and values; tensors are shared, not copied
    for value in sub.inputs:
        value.const_value = None  # an input here: its weight is not served
    for value in [*sub.inputs, *sub.outputs]:
        if value.type is None:
            value.type, value.shape = types.get(value.name, (_UNKNOWN, None))
    near = ir.Model(
        sub,
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
        functions=list(model.functions.values()),
        metadata_props={f"{PREFIX}focus": focus},
    )
    return near


def _reads(node: ir.Node, graph: ir.Graph) -> list[ir.Value]:
    """What `node` reads from `graph`: its inputs, and what its subgraphs (If, Loop) read."""
    reads = [v for v in node.inputs if v is not None]
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            subgraphs = [attr.as_graph()]
        elif attr.type == ir.AttributeType.GRAPHS:
            subgraphs = list(attr.as_graphs())
        else:
            continue
        for inner in (n for sub in subgraphs for n in ir.traversal.RecursiveGraphIterator(sub)):
            reads.extend(v for v in inner.inputs if v is not None and v.graph is graph)
    return reads


def _has_values(tensor: ir.TensorProtocol | None) -> bool:
    """Inline values are here (not external, not withheld by `annotate`)."""
    return tensor is not None and not isinstance(tensor, (ir.ExternalTensor, _Withheld))


_UNKNOWN = ir.TensorType(ir.DataType.FLOAT)  # what an edge is when inference cannot tell


def _edge_types(
    model: ir.Model, edges: list[ir.Value]
) -> dict[str, tuple[ir.TypeProtocol, ir.Shape | None]]:
    """The types onnx infers for `edges`, on the part of `model` that computes them.

    onnx's `infer_shapes`, not onnx-ir's `ShapeInferencePass`: the pass infers on a whole
    model and merges every value back into it, so it would need a clone (the annotated copy
    is served as the file declares it): five times the time on a 10,000-node graph, and the
    whole graph as a proto beside the IR. A view of the edges' ancestors is usually small
    (the first finding sits early in the graph).
    """
    if not edges:
        return {}
    graph = model.graph
    ancestors: set[ir.Node] = set()
    queue = [p for v in edges if (p := _producer(v, graph))]
    while queue:
        node = queue.pop()
        if node not in ancestors:
            ancestors.add(node)
            queue.extend(p for v in _reads(node, graph) if (p := _producer(v, graph)))
    reads = {v for node in ancestors for v in _reads(node, graph)}
    view = ir.GraphView(
        [v for v in graph.inputs if v in reads],
        [v for v in edges if v.producer() is not None],
        nodes=[node for node in graph if node in ancestors],
        initializers=[v for v in graph.initializers.values() if v in reads],
        opset_imports=graph.opset_imports,
    )
    part = ir.Model(
        view,  # type: ignore[arg-type]  # a GraphView serializes as a graph
        ir_version=model.ir_version,
        functions=list(model.functions.values()),
    )
    wanted = {v.name for v in edges}
    try:
        # As bytes: the proto is gone before onnx parses its own copy (the peak of a show).
        inferred = onnx.shape_inference.infer_shapes(ir.to_proto(part).SerializeToString())
    except Exception:  # inference is a nicety: untyped edges still render
        return {}
    types = {}
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        if info.name in wanted and info.type.HasField("tensor_type"):
            known = ir.serde.deserialize_value_info_proto(info, None)
            types[info.name] = (known.type, known.shape)
    return types
