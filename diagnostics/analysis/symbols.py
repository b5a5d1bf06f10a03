"""Propagate the input symbols (`batch`, `sequence`, `height`...) through a graph, without weights.

Small integer tensors (shapes and indices) carry their values too, so `Shape -> Gather ->
Concat` chains are followed. The interpreter is the dispatcher: it holds the state
(`symbol_state`) and runs each node through its rule (`symbol_rules`); ops without a rule
of our own get their output shapes from onnx's shape inference run on that one node with
the shapes we hold (`node_inference`); control flow and other domains' ops are named as
not followed. Unknown stays unknown: nothing guesses.
"""

from __future__ import annotations

import onnx

from .dims import Dim
from .onnx_fallback import infer_node
from .op_rules import HANDLERS
from .state import SymbolState, misfit


class Interpreter(SymbolState):
    """Runs a graph's nodes on symbolic shapes; `run(node)` in topological order."""

    def run(self, node: onnx.NodeProto, override: dict[int, list[Dim]] | None = None) -> None:
        """Compute the node's output shapes (and values); `override` replaces input values."""
        if override:
            saved = {i: self.values.get(node.input[i]) for i in override}
            for i, values in override.items():
                self.values[node.input[i]] = values
        why = None
        try:
            handler = HANDLERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if handler is not None:
                try:
                    handler(self, node)
                except (ArithmeticError, IndexError) as exc:  # an axis past the rank...
                    for name in node.output:
                        self.shapes[name] = None
                        self.values.pop(name, None)
                    why = misfit(exc)
            elif infer_node(self, node):
                self.inferred[node.op_type] = self.inferred.get(node.op_type, 0) + 1
            else:
                self.unhandled[node.op_type] = self.unhandled.get(node.op_type, 0) + 1
                for name in node.output:
                    self.shapes[name] = None
            self.bound(node, why)
        finally:
            if override:
                for i, values in saved.items():
                    if values is None:
                        self.values.pop(node.input[i], None)
                    else:
                        self.values[node.input[i]] = values
