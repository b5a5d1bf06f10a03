"""`check`: load without weights, read the signature, propagate symbols, apply the rules.

Static-input findings come from the signature; frozen-shape and folded-constant
findings from the propagation (with static text dims treated as the symbols they
should have been); `probe=True` then runs the model to prove them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import onnx

from . import limits
from .analysis.frozen import interpret
from .analysis.signature import read_signature
from .analysis.source import node_source
from .analysis.symbols import Interpreter
from .errors import ShapeSpecError
from .findings import Finding, Report
from .loading import load_model
from .probe.feeds import text_inputs
from .probe.given import load_feeds, run_probe_feeds
from .probe.run import default_shapes, default_sizes, run_probe


def check(
    source: str | os.PathLike[str] | onnx.ModelProto,
    probe: bool = False,
    probe_shapes: Sequence[tuple[int, int]] | None = None,
    dummy: dict[str, int] | None = None,
    expect: dict[str, tuple[int | str, ...]] | None = None,
    probe_inputs: Sequence | None = None,
    max_memory: int | str | None = None,
) -> Report:
    """Find every shape frozen from the export dummy; never prints.

    Args:
        source: a path to an `.onnx` file (or a directory holding `model.onnx`), or a model.
        probe: also run the model in onnxruntime at `probe_shapes` (default: a built-in set).
        dummy: export sizes by role ({"batch": 2, "sequence": 8}) when the model records none.
        expect: the input dims the user expects ({"pixel_values": ("batch", 3, "height",
            "width")}, a name meaning dynamic): what the file does otherwise is a finding.
        probe_inputs: run the probe on these inputs instead (`.npz` paths or dicts of arrays
            named as the graph's inputs): for models whose inputs must agree in value.
        max_memory: the most bytes an input the probe reads or builds may take (bytes, or
            text such as "8G"; default `limits.default_max_memory()`).

    Raises:
        DiagnosticsError: the file is missing, not ONNX, truncated, or uses unknown domains;
            `ResourceLimitError` where a probe input would need more than `max_memory`.
    """
    budget = memory_budget(max_memory)
    loaded = load_model(source)
    graph = loaded.model.graph
    signature = read_signature(loaded.model, dummy, expect)
    interpreter, found, skipped = interpret(loaded.model, loaded.read_tensor, signature)
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
    if any(f.kind == "static-input" for f in signature.findings):
        notes.append(
            "static inputs were analysed as if dynamic, to find every node that froze them"
        )
    result = None
    if probe_inputs:
        result = run_probe_feeds(loaded, findings,
                                 load_feeds(loaded.model, probe_inputs, budget))
    elif probe:
        text = not isinstance(text_inputs(loaded.model), str)
        if probe_shapes and isinstance(probe_shapes[0], dict):  # sizes by the file's names too
            probe_shapes = [{signature.aliases.get(k, k): v for k, v in sizes.items()}
                            for sizes in probe_shapes]
        shapes = (list(probe_shapes) if probe_shapes else
                  default_shapes(signature.dummy, interpreter.limits.get("sequence")) if text else
                  default_sizes(loaded.model, dummy, interpreter))
        result = run_probe(loaded, findings, shapes, budget=budget)
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
        limits=dict(interpreter.limits),
    )


def memory_budget(max_memory: int | str | None) -> int:
    """The memory budget in bytes; a size that does not parse is bad input."""
    try:
        budget = limits.max_memory(max_memory)
    except ValueError as exc:
        raise ShapeSpecError(f"--max-memory: {exc}") from None
    if not isinstance(budget, int) or budget < 1:
        raise ShapeSpecError(f"--max-memory: not a size: {max_memory!r} (it must be positive)")
    return budget


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
