"""Map an ONNX node back to the PyTorch module and line that produced it.

The TorchScript exporter names nodes by module path (`/model/encoder/layer.0/
attention/self/Reshape`). The torch.export-based exporter names them `node_view_3`
but keeps `metadata_props`: `pkg.torch.onnx.name_scopes` (module path),
`namespace` (module classes) and `pkg.torch.onnx.stack_trace` (file and line).
"""

from __future__ import annotations

import ast
import re

import onnx

from ..findings import Source

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')
# Frames inside these are the exporter's or the framework's plumbing, not the model's code.
_PLUMBING = ("torch/nn/modules/module.py", "torch/fx/", "torch/_", "transformers/utils/")


def node_source(node: onnx.NodeProto | None) -> Source:
    if node is None:
        return Source()
    props = {p.key: p.value for p in node.metadata_props}
    module = _module_from_scopes(props.get("pkg.torch.onnx.name_scopes"))
    if module is None and node.name.startswith("/"):
        module = ".".join(node.name.strip("/").split("/")[:-1]) or None
    module_class = _class_from_hierarchy(props.get("pkg.torch.onnx.class_hierarchy"))
    location, code = _frame(props.get("pkg.torch.onnx.stack_trace") or node.doc_string)
    return Source(module, module_class, location, code)


def _module_from_scopes(text: str | None) -> str | None:
    if not text:
        return None
    try:
        scopes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    modules = [s for s in scopes[:-1] if isinstance(s, str) and s]  # the last is the fx node
    return modules[-1] if modules else None


def _class_from_hierarchy(text: str | None) -> str | None:
    # "['wrapper.Encoder', '...BertModel', ..., '...BertSelfAttention', 'aten.view.default']"
    if not text:
        return None
    try:
        classes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    modules = [c for c in classes[:-1] if isinstance(c, str) and c]  # the last is the op
    return modules[-1].rsplit(".", 1)[-1] if modules else None


def _frame(trace: str | None) -> tuple[str | None, str | None]:
    """The innermost frame of the model's own code, as (file:line, code)."""
    if not trace:
        return None, None
    frames = _FRAME.findall(trace)
    useful = [f for f in frames if not any(p in f[0] for p in _PLUMBING)] or frames
    if not useful:
        return None, None
    path, line, _function, code = useful[-1]
    return f"{path}:{line}", code.strip() or None
