"""What inside a diverging module explains it, where that can be shown from the file.

Three causes are looked for, in order: a LayerNormalization whose epsilon is not the
module's `eps`; an integer constant holding the export dummy's batch or sequence size
(recorded as `subgraft.dummy_*`: a size frozen at export); a weight that differs
from the module's parameter (the same shape, or transposed as exporters store
Linear weights). None found is None: a cause is never guessed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..analysis.signature import ROLES, read_signature
from ..analysis.source import node_source
from ..loading import LoadedModel
from .align import rename

_INTS = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}
_SMALL = 16


def find_cause(module: str, nodes: list[onnx.NodeProto], modules: dict, loaded: LoadedModel,
               prefix: tuple[str, str], atol: float) -> str | None:
    """Args:
        modules: the reference's modules by name.
    """
    return (_epsilon(nodes, modules, prefix) or _dummy_constant(nodes, loaded)
            or _weights(module, nodes, modules, loaded, atol))


def _epsilon(nodes, modules: dict, prefix) -> str | None:
    for node in nodes:
        if not node.op_type.endswith("LayerNormalization"):
            continue
        scope = node_source(node).module
        owner = modules.get(rename(scope, prefix)) if scope is not None else None
        eps = getattr(owner, "eps", getattr(owner, "variance_epsilon", None))
        if not isinstance(eps, float):
            continue
        attrs = {a.name: a for a in node.attribute}
        value = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
        if not np.isclose(value, eps, rtol=1e-3, atol=0.0):
            return (f"{node.op_type} {node.name} has epsilon {value:.3g} where "
                    f"{rename(scope, prefix)} has eps {eps:.3g}")
    return None


def _dummy_constant(nodes, loaded: LoadedModel) -> str | None:
    """Recorded dummy sizes (metadata, static inputs) count anywhere in a small constant;
    guessed ones (the 2x8 default) only as a `[batch, sequence, ...]` shape, since 2 and 8
    are everywhere."""
    signature = read_signature(loaded.model)
    dummy = {r: signature.dummy[r] for r in ROLES if r in signature.dummy}
    if not dummy:
        return None
    recorded = signature.dummy_source in ("metadata", "static inputs")
    initializers = {t.name: t for t in loaded.model.graph.initializer}
    constants = {n.output[0]: n for n in loaded.model.graph.node
                 if n.op_type == "Constant" and n.output}
    for node in nodes:
        for name in node.input:
            values = _small_ints(initializers.get(name), constants.get(name))
            if values is None:
                continue
            if not recorded and values[:2] != [dummy.get("batch"), dummy.get("sequence")]:
                continue
            for role, size in dummy.items():
                if size in values:
                    how = "" if recorded else " (the usual default; the file records none)"
                    return (f"constant {name} = {values} read by {node.op_type} {node.name} "
                            f"holds the export dummy's {role} {size}{how}: a size frozen at "
                            "export (python -m diagnostics check finds it, repair rewrites it)")
    return None


def _small_ints(tensor: onnx.TensorProto | None, constant: onnx.NodeProto | None
                ) -> list[int] | None:
    if tensor is None and constant is not None:
        attrs = {a.name: a for a in constant.attribute}
        if "value" in attrs:
            tensor = attrs["value"].t
        elif "value_ints" in attrs:
            return list(attrs["value_ints"].ints)[:_SMALL]
        elif "value_int" in attrs:
            return [attrs["value_int"].i]
    if tensor is None or tensor.data_type not in _INTS or np.prod(tensor.dims) > _SMALL:
        return None
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    return [int(v) for v in numpy_helper.to_array(tensor).reshape(-1)]


def _weights(module: str, nodes, modules: dict, loaded: LoadedModel, atol: float
             ) -> str | None:
    owner = modules.get(module)
    if owner is None:
        return None
    initializers = {t.name: t for t in loaded.model.graph.initializer}
    used = [initializers[v] for n in nodes for v in n.input if v in initializers]
    floats = {t.name: t for t in used if t.data_type == onnx.TensorProto.FLOAT}
    worst = None
    for name, param in list(owner.named_parameters())[:64]:
        if param.numel() < 2:
            continue
        value = param.detach().float().numpy()
        shapes = {value.shape, value.T.shape}
        best = None
        for tensor in floats.values():
            if tuple(tensor.dims) not in shapes:
                continue
            stored = loaded.read_tensor(tensor)
            if stored is None:
                continue
            for candidate in (value, value.T):
                if candidate.shape == stored.shape:
                    diff = float(np.max(np.abs(stored - candidate)))
                    if best is None or diff < best[0]:
                        best = (diff, tensor.name)
        if best and best[0] > atol and (worst is None or best[0] > worst[0]):
            worst = (best[0], best[1], name)
    if worst is None:
        return None
    full = f"{module}.{worst[2]}" if module else worst[2]
    return f"initializer {worst[1]} differs from parameter {full} by max abs {worst[0]:.3g}"
