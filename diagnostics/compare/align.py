"""Which ONNX nodes belong to which PyTorch module, and which values cross each scope.

The exporters record a node's module path (`analysis.source.node_source`: the dynamo
exporter's `pkg.torch.onnx.name_scopes`, the TorchScript exporter's node names). The
exported root is often a wrapper (`model.encoder...` for the reference's
`encoder...`): the prefix pair that lets most scopes name a reference module is
chosen by vote, then every scope is renamed with it. A module's outputs are the
values produced inside its scope and read outside it (or graph outputs); its inputs
are the values read inside it and produced outside (constants aside).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import onnx

from ..analysis.source import node_source

_QUANTIZERS = {"QuantizeLinear", "DynamicQuantizeLinear"}
# onnxruntime's transformer fusions: each replaces the nodes of several modules (a Linear's
# bias Add inside SkipLayerNormalization), so no value around one is a module's output
FUSED = {"Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
         "BiasGelu", "FastGelu", "SkipSimplifiedLayerNormalization", "GroupQueryAttention"}


@dataclass(frozen=True)
class Scopes:
    """Reference module -> the ONNX nodes in its scope (its submodules' included)."""

    nodes: dict[str, list[onnx.NodeProto]]
    outputs: dict[str, list[str]]  # values leaving the scope, in graph order
    inputs: dict[str, list[str]]  # values entering the scope, constants aside
    prefix: tuple[str, str]  # (the ONNX scopes' prefix, the reference's) chosen by vote
    unscoped: tuple[onnx.NodeProto, ...] = ()  # nodes no module's scope holds
    fused: frozenset[str] = frozenset()  # values read or written by a fused node

    def crossing(self) -> set[str]:
        return {v for values in (*self.outputs.values(), *self.inputs.values()) for v in values}


def node_scopes(model: onnx.ModelProto) -> dict[int, str]:
    """Node index -> module path: what its exporter recorded, else (for nodes a tool added
    after export, as onnxruntime's quantizer does, recording no scope) the scope its
    consumers share: quantizing a value is the first step of the op that reads it; a
    DequantizeLinear takes its producers' instead, the last step of the op that made
    its input. A quantizer named after the value it reads (TorchScript-style names,
    `.../Mul_1_output_0_QuantizeLinear`) is placed by its consumers too. Nodes with none
    of these are left out."""
    graph = model.graph
    found: dict[int, str] = {}
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(graph.node):
        module = node_source(node).module
        named_only = node.op_type in _QUANTIZERS and not node.metadata_props
        if module is not None and not named_only:
            found[index] = module
        for output in node.output:
            producer[output] = index
        for name in node.input:
            consumers[name].append(index)
    dequantize = {i for i, n in enumerate(graph.node) if n.op_type == "DequantizeLinear"}
    for index in reversed(range(len(graph.node))):
        if index not in found and index not in dequantize:
            scopes = [found[c] for o in graph.node[index].output for c in consumers[o]
                      if c in found]
            if scopes and _common(scopes) is not None:
                found[index] = _common(scopes)
    for index, node in enumerate(graph.node):
        if index not in found:
            scopes = [found[producer[v]] for v in node.input
                      if v in producer and producer[v] in found]
            if scopes and _common(scopes) is not None:
                found[index] = _common(scopes)
    return found


def _common(scopes: list[str]) -> str | None:
    parts = [s.split(".") for s in scopes]
    shared = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        shared.append(column[0])
    return ".".join(shared) or None


def choose_prefix(scopes: Iterable[str], names: Iterable[str]) -> tuple[str, str]:
    """(onnx prefix, reference prefix), one of them empty, under which most scopes are names."""
    suffixes: dict[tuple[str, ...], set[tuple[str, ...]]] = defaultdict(set)
    for name in names:
        parts = tuple(name.split(".")) if name else ()
        for k in range(len(parts)):
            suffixes[parts[k:]].add(parts[:k])
    votes: Counter = Counter()
    for scope in set(scopes):
        parts = tuple(scope.split("."))
        for k in range(len(parts)):
            for ref_prefix in suffixes.get(parts[k:], ()):
                if not k or not ref_prefix:
                    votes[(parts[:k], ref_prefix)] += 1
    if not votes:
        return "", ""
    (onnx_prefix, ref_prefix), _ = max(votes.items(), key=lambda kv: (kv[1], -len(kv[0][0])))
    return ".".join(onnx_prefix), ".".join(ref_prefix)


def rename(scope: str, prefix: tuple[str, str]) -> str | None:
    onnx_prefix, ref_prefix = prefix
    if onnx_prefix:
        if scope == onnx_prefix:
            rest = ""
        elif scope.startswith(onnx_prefix + "."):
            rest = scope[len(onnx_prefix) + 1:]
        else:
            return None
    else:
        rest = scope
    return ".".join(p for p in (ref_prefix, rest) if p)


def build_scopes(model: onnx.ModelProto, names: list[str]) -> Scopes:
    """Scopes for the reference's module `names` ("" is the root: the whole graph, so a
    graph whose exporter recorded no scopes is still compared at its outputs)."""
    raw = node_scopes(model)
    prefix = choose_prefix(raw.values(), [n for n in names if n])
    renamed = {i: rename(s, prefix) for i, s in raw.items()}
    by_scope: dict[str, list[int]] = defaultdict(list)
    for index, scope in renamed.items():
        if scope is not None:
            by_scope[scope].append(index)
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name:
                consumers[name].append(index)
    nodes, outputs, inputs = {}, {}, {}
    for name in names:
        if name:
            inside = sorted(i for scope, idx in by_scope.items() if _under(scope, name)
                            for i in idx)
        else:  # the root holds the whole graph, scoped or not: its outputs are the graph's
            inside = list(range(len(graph.node)))
        if not inside:
            continue
        members = set(inside)
        produced = {o: i for i in inside for o in graph.node[i].output if o}
        outputs[name] = [o for o in produced if o in graph_outputs
                         or any(c not in members for c in consumers[o])]
        inputs[name] = list(dict.fromkeys(
            v for i in inside for v in graph.node[i].input
            if v and v not in produced and v not in constants))
        nodes[name] = [graph.node[i] for i in inside]
    held = {i for idx in by_scope.values() for i in idx}
    unscoped = tuple(n for i, n in enumerate(graph.node) if i not in held)
    fused = frozenset(v for n in graph.node if n.domain == "com.microsoft" and n.op_type in FUSED
                      for v in (*n.input, *n.output) if v)
    return Scopes(nodes, outputs, inputs, prefix, unscoped, fused)


def _under(scope: str, module: str) -> bool:
    return not module or scope == module or scope.startswith(module + ".")
