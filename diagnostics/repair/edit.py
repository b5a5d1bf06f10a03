"""Edit a graph for repair: fresh names, new initializers, nodes inserted before an anchor.

The nodes that compute a size at run time are built in `size_nodes`. A check that
declines returns `Declined(reason)`, as data: helpers return it to the rule, the rule to
`repair_pass`, which makes it a refusal. Exceptions are left for bad input and bugs.

Each finding's rule runs as one transaction (`GraphEdit.attempt`): nothing it builds
reaches the model unless it returns a change. An anchor is a name exactly one node
has, or `START`, an object no name can equal.

The graph is onnx-ir's (`ir.from_proto`: external weights stay `ir.ExternalTensor`
references, never read): kept nodes go in with `Graph.insert_before`, readers are
rewired with `Node.replace_input_with`, and an orphan is what has no `Value.uses()` left
(readers inside subgraphs count). What stays ours: the pending set (an `ir.Node` built
with its inputs is already one of their uses, so a declined rule's nodes are kept as
plans and built only on commit), the anchors, and which orphans to drop: only the
constants a repair released, never dead code the model came with (onnx-ir's
`RemoveUnusedNodesPass` would drop all of it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

from ..analysis.dims import Shape
from ..findings import Finding, SymbolInfo
from .results import Change

REPAIR_KEY = "subgraft.repair"


class _Start:
    """The anchor at the start of the graph: an object, not a name, so no node has it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "START"


START = _Start()
Anchor = str | _Start  # a node's name (exactly one node has it), or START


@dataclass(frozen=True)
class Declined:
    """A check that declined: the reason, shown as a refusal. Returned, never raised."""

    reason: str


Rule = Callable[["GraphEdit", Finding, int], Change | Declined]


def to_proto(model: ir.Model, source: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, edited from `source`, as a proto laid out as `source` is.

    `ir.to_proto` also writes a value_info for every initializer and may order the opset
    imports its own way; a repair changes neither, so `source`'s are put back, and an edit
    that kept nothing gives back `source`'s bytes.
    """
    return keep_layout(ir.to_proto(model), source)


def keep_layout(proto: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """`proto` (written by onnx-ir) with `source`'s value_info and opset imports."""
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(source.graph.value_info)
    del proto.opset_import[:]
    proto.opset_import.extend(source.opset_import)
    return proto


def inputs(node: ir.Node) -> list[str]:
    """The names `node` reads ("" for an omitted optional input), as a NodeProto lists them."""
    return [value.name or "" if value is not None else "" for value in node.inputs]


def outputs(node: ir.Node) -> list[str]:
    return [value.name or "" for value in node.outputs]


@dataclass(frozen=True)
class _Planned:
    """A node to build on commit: before `anchor`, reading the tensors named `inputs`."""

    anchor: Anchor
    op_type: str
    inputs: tuple[str, ...]
    name: str
    output: str
    attrs: dict[str, object]
    purpose: str


@dataclass
class _Pending:
    """What the rule being tried has built, kept apart from the model until it returns a
    change: the nodes (planned, with their anchors), initializers, names, cached `Shape`
    nodes, rewired inputs, notes, released tensors and rebuilt constants."""

    nodes: list[_Planned] = field(default_factory=list)
    initializers: list[tuple[str, np.ndarray]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    shape_of: dict[tuple[Anchor, str], str] = field(default_factory=dict)
    inputs: list[tuple[ir.Node, int, str]] = field(default_factory=list)
    notes: list[tuple[ir.Node, str]] = field(default_factory=list)
    orphans: set[str] = field(default_factory=set)
    replaced: dict[str, int] = field(default_factory=dict)


@dataclass
class GraphEdit:
    """A model being repaired, with the analysis' shapes of the original graph.

    Each finding's edit is one transaction (`attempt`): what its rule builds and rewires
    waits in a pending set and reaches the model only when the rule returns a change; a
    rule that declines, or raises, leaves the model as if it had never run. Kept nodes
    go in before their anchors when kept; `finish` drops the constants they orphaned.
    """

    model: ir.Model
    shapes: dict[str, Shape]
    symbols: dict[str, SymbolInfo]
    read_tensor: Callable[[onnx.TensorProto], np.ndarray | None]
    kept: int = 0  # transactions kept
    _names: set[str] = field(default_factory=set)
    _shape_of: dict[tuple[Anchor, str], str] = field(default_factory=dict)
    _orphans: set[str] = field(default_factory=set)
    replaced: dict[str, int] = field(default_factory=dict)  # constant -> finding that rebuilt it
    _pending: _Pending | None = None

    def __post_init__(self) -> None:
        graph = self.model.graph
        self.nodes = {n.name: n for n in graph if n.name}
        self._named = Counter(n.name or "" for n in graph)
        self._start = next(iter(graph), None)  # START: before the graph's first node
        self.values: dict[str, ir.Value] = {v.name: v for v in graph.inputs if v.name}
        self.values.update(graph.initializers)
        for node in graph:
            self._names.add(node.name or "")
            self.values.update((v.name, v) for v in node.outputs if v.name)
        self._names.update(self.values)

    # -- one finding, one transaction ------------------------------------------------------

    def attempt(self, rule: Rule, finding: Finding, index: int) -> Change | Declined:
        """Run `rule`; keep what it built only if it returns a change."""
        self._pending = _Pending()
        try:
            outcome = rule(self, finding, index)
            if not isinstance(outcome, Declined):
                self._commit()
            return outcome
        finally:
            self._pending = None  # declined or raised: nothing it built is kept

    def added(self) -> tuple[str, ...]:
        """The names of the nodes the rule being tried has added so far."""
        return tuple(planned.name for planned in self._open().nodes)

    def _open(self) -> _Pending:
        if self._pending is None:
            raise RuntimeError("GraphEdit is written only inside attempt()")
        return self._pending

    def _commit(self) -> None:
        pending = self._open()
        graph = self.model.graph
        self._names |= pending.names
        for name, array in pending.initializers:
            value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
            graph.register_initializer(value)
            self.values[name] = value
        for planned in pending.nodes:
            node = ir.Node(
                "", planned.op_type, [self.values[name] for name in planned.inputs],
                ir.convenience.convert_attributes(planned.attrs),
                outputs=[ir.Value(name=planned.output)], name=planned.name,
                metadata_props={REPAIR_KEY: f"added: {planned.purpose}"},
            )
            self.values[planned.output] = node.outputs[0]
            anchor = self._start if planned.anchor is START else self.nodes[planned.anchor]
            if anchor is None:
                graph.append(node)
            else:
                graph.insert_before(anchor, node)
        self._shape_of.update(pending.shape_of)
        for node, position, name in pending.inputs:
            node.replace_input_with(position, self.values[name])
        for node, text in pending.notes:
            old = node.metadata_props.get(REPAIR_KEY)
            node.metadata_props[REPAIR_KEY] = text if old is None else f"{old}; {text}"
        self._orphans |= pending.orphans
        self.replaced.update(pending.replaced)
        self.kept += 1

    # -- reading ---------------------------------------------------------------------------

    def node(self, name: str) -> ir.Node | Declined:
        """The node named `name`; declined where none has it, or several do (an ambiguous
        anchor: which one to rewrite and insert before is not known)."""
        if self._named.get(name, 0) > 1:
            return Declined(f"{self._named[name]} nodes are named {name!r}: the name does not "
                            "say which one to rewrite")
        if name not in self.nodes:
            return Declined(f"node {name!r} is not in the graph")
        return self.nodes[name]

    def constant(self, name: str) -> np.ndarray | None:
        """The values of an initializer or a Constant node's output; None when computed."""
        value = self.values.get(name)
        if value is None:
            return None
        if value.is_initializer():
            # through our loader, which checks where external data may be read from
            tensor = value.const_value
            if isinstance(tensor, ir.serde.TensorProtoTensor):
                return self.read_tensor(tensor.raw)
            return None if tensor is None else self.read_tensor(ir.serde.serialize_tensor(tensor))
        node = value.producer()
        if node is None or node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            return None
        # not `ir.convenience.get_const_tensor`: it names the tensor, and so writes into the
        # proto it shares with the model it was read from
        attributes = node.attributes
        if "value" in attributes:
            return attributes["value"].as_tensor().numpy()
        if "value_ints" in attributes:
            return np.array(list(attributes["value_ints"].as_ints()), np.int64)
        if "value_int" in attributes:
            return np.array(attributes["value_int"].as_int(), np.int64)
        return None

    def consumers(self, tensor: str) -> list[ir.Node]:
        """The graph's nodes that read `tensor`, in graph order (not those of subgraphs)."""
        value = self.values.get(tensor)
        return [] if value is None else [n for n in self.model.graph
                                         if any(v is value for v in n.inputs)]

    def first_consumer(self, tensor: str) -> Anchor | Declined:
        """The anchor before which what replaces `tensor` is built: its first reader, or the
        start of the graph when nothing reads it."""
        users = self.consumers(tensor)
        if not users:
            return START
        name = users[0].name
        if not name:
            return Declined(f"the first reader of {tensor!r} has no name: no place to build "
                            "its replacement before")
        node = self.node(name)
        return node if isinstance(node, Declined) else name

    def replaced_by(self, tensor: str) -> int | None:
        """The finding that already rebuilt the constant `tensor`, if one did."""
        pending = self._pending.replaced if self._pending is not None else {}
        return pending.get(tensor, self.replaced.get(tensor))

    # -- writing (pending until the rule returns a change) ---------------------------------

    def unique(self, base: str) -> str:
        pending = self._open().names
        name, n = base, 1
        while name in self._names or name in pending:
            name, n = f"{base}_{n}", n + 1
        pending.add(name)
        return name

    def add_initializer(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        self._open().initializers.append((name, array))
        return name

    def add_node(
        self, anchor: Anchor, op_type: str, inputs: Sequence[str], purpose: str, **attrs: object
    ) -> str:
        """Insert `op_type` before `anchor`; returns its output's name."""
        if anchor is not START and (not anchor or self._named.get(anchor) != 1):
            raise ValueError(f"{anchor!r} is not the name of exactly one node: no anchor")
        prefix = "/subgraft" if anchor is START else anchor
        name = self.unique(f"{prefix}/subgraft_{op_type}")
        output = self.unique(name + "_output_0")
        self._open().nodes.append(
            _Planned(anchor, op_type, tuple(inputs), name, output, dict(attrs), purpose))
        return output

    def set_input(self, node: ir.Node, position: int, name: str) -> None:
        """`node` reads `name` as its input `position`, once the change is kept."""
        self._open().inputs.append((node, position, name))

    def note(self, node: ir.Node, text: str) -> None:
        """Record what was done in the node's metadata_props (appended if already there)."""
        self._open().notes.append((node, text))

    def rebuilt(self, tensor: str, index: int) -> None:
        """The constant `tensor` is rebuilt by finding `index`: later findings reuse it."""
        self._open().replaced[tensor] = index

    def shape_of(self, anchor: Anchor, data: str) -> str:
        """The output of one `Shape` of `data` before `anchor`, shared by the findings."""
        key = (anchor, data)
        pending = self._open().shape_of
        if key not in self._shape_of and key not in pending:
            pending[key] = self.add_node(anchor, "Shape", [data], f"shape of {data}")
        return pending.get(key, self._shape_of.get(key))

    # -- finishing -------------------------------------------------------------------------

    def finish(self) -> None:
        """Drop the constants a kept change released that nothing reads any more."""
        if self._pending is not None:
            raise RuntimeError("finish() inside attempt()")
        graph = self.model.graph
        for name in sorted(self._orphans):
            value = self.values.get(name)
            if value is None or value.uses() or value.is_graph_output():
                continue
            producer = value.producer()
            if producer is not None and producer.op_type == "Constant" and producer.graph is graph:
                graph.remove(producer)
            elif value.is_initializer() and not value.is_graph_input():
                graph.initializers.pop(name)

    def replace_everywhere(self, tensor: str, new: str) -> list[ir.Node]:
        """Every reader of `tensor` in the graph reads `new` instead (once kept); returns
        the readers. Readers inside subgraphs keep `tensor`: `new` is built before the
        graph's first reader, which may come after them."""
        readers = self.consumers(tensor)
        for node in readers:
            for position, name in enumerate(inputs(node)):
                if name == tensor:
                    self.set_input(node, position, new)
        self.release(tensor)
        return readers

    def release(self, tensor: str) -> None:
        """`tensor` may have lost its last reader: drop it (and its Constant node) at finish."""
        self._open().orphans.add(tensor)

