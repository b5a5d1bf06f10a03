"""`check`: load without weights, read the signature, propagate symbols, apply the rules.

Static-input findings come from the signature; frozen-shape and folded-constant
findings from the propagation (with static text dims treated as the symbols they
should have been); `probe=True` then runs the model to prove them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import onnx

from .findings import Finding, Report
from .frozen import find_frozen
from .inputs import read_signature
from .loading import load_model
from .probe import _text_inputs, default_shapes, default_sizes, run_probe
from .source import node_source
from .symbols import Interpreter


def check(
    source: str | os.PathLike[str] | onnx.ModelProto,
    probe: bool = False,
    probe_shapes: Sequence[tuple[int, int]] | None = None,
    dummy: dict[str, int] | None = None,
) -> Report:
    """Find every shape frozen from the export dummy; never prints.

    Args:
        source: a path to an `.onnx` file (or a directory holding `model.onnx`), or a model.
        probe: also run the model in onnxruntime at `probe_shapes` (default: a built-in set).
        dummy: export sizes by role ({"batch": 2, "sequence": 8}) when the model records none.

    Raises:
        DiagnosticsError: the file is missing, not ONNX, truncated, or uses unknown domains.
    """
    loaded = load_model(source)
    graph = loaded.model.graph
    signature = read_signature(loaded.model, dummy)
    sizes = {s.name: s.dummy for s in signature.symbols if s.dummy is not None}
    interpreter = Interpreter(graph, loaded.read_tensor, loaded.model, sizes=sizes)
    for name, dims in signature.seeds.items():
        interpreter.set_input(name, dims)
    found, skipped = find_frozen(interpreter, graph, interpreter.sizes)
    nodes = {node.name: node for node in graph.node}
    static = [f for f in signature.findings
              if f.node in signature.batched and not _reads_batch(interpreter, graph, found)]
    findings = [f for f in signature.findings if f not in static] + [
        _with_source(f, nodes.get(f.node)) for f in sorted(found, key=_order(graph))
    ]
    notes = []
    if loaded.weights == "missing":
        notes.append(
            f"weights not read: external data {', '.join(loaded.missing)} not found "
            "(the static check does not need them; --probe does)"
        )
    if signature.findings:
        notes.append(
            "static text inputs were analysed as if dynamic, to find every node that froze them"
        )
    result = None
    if probe:
        text = not isinstance(_text_inputs(loaded.model), str)
        shapes = (list(probe_shapes) if probe_shapes else
                  default_shapes(signature.dummy) if text else default_sizes(loaded.model, dummy))
        result = run_probe(loaded, findings, shapes)
    return Report(
        model=loaded.name,
        inputs=signature.inputs,
        outputs=signature.outputs,
        symbols=signature.symbols,
        dummy=signature.dummy,
        dummy_source=signature.dummy_source,
        exporter=signature.exporter,
        findings=tuple(findings),
        skipped=tuple(skipped),
        unhandled_ops=dict(interpreter.unhandled),
        weights=loaded.weights,
        notes=tuple(notes),
        probe=result,
        nodes=len(graph.node),
    )


def _reads_batch(interpreter: Interpreter, graph: onnx.GraphProto, found: list[Finding]) -> bool:
    """Whether the graph treats axis 0 as a batch: a frozen batch, or a Reshape, Flatten or
    matrix product whose data carries the batch symbol."""
    if any("batch" in (v.symbol or "") for f in found for v in f.frozen):
        return True
    for node in graph.node:
        if node.op_type in ("Reshape", "Flatten", "MatMul", "Gemm", "Softmax"):
            shape = interpreter.shape(node.input[0])
            if shape and any(d.expr is not None and "batch" in d.expr.symbols for d in shape):
                return True
    return False


def _with_source(finding: Finding, node: onnx.NodeProto | None) -> Finding:
    from dataclasses import replace

    return replace(finding, source=node_source(node))


def _order(graph: onnx.GraphProto):
    position = {node.name: i for i, node in enumerate(graph.node)}
    return lambda f: position.get(f.node, -1)
