"""What inside a diverging module explains it, where that can be shown from the file.

Causes looked for, in order: a LayerNormalization whose epsilon is not the
module's `eps`; an integer constant holding the export dummy's batch or sequence size
(recorded as `subgraft.dummy_*`: a size frozen at export), an index that picks an
axis (of a Shape, or an Unsqueeze's axes) aside, or a float scalar equal to a recorded
dummy size of 5 or more (a size frozen into arithmetic); a Div cast to an integer
(ONNX truncates where PyTorch's floor_divide floors); upstream of the module's inputs, in
nodes no agreeing module holds, an integer constant sized for the dummy's sequence (a
dim of k x the recorded sequence: position tables computed from Python ints); a weight
that differs from the module's parameter (the same shape, or transposed as exporters
store Linear weights; not one another parameter holds exactly). A dummy size every run
had too explains nothing, and a size divided is never negative. None found is None: a
cause is never guessed.
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
_ALL_INTS = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16,
             onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
             onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
_ARITHMETIC = 5  # a float constant counts as a frozen size only from this size up (2.0, 3.0
# are exponents and factors everywhere)
_SMALL = 16


_AXES = {"Unsqueeze": 1, "Squeeze": 1, "Slice": 3, "ReduceSum": 1, "ReduceMean": 1,
         "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1, "ReduceL2": 1}
_UPSTREAM = 400  # nodes walked back from a module's inputs
_MULTIPLES = 4  # a dim of 1..4 x the dummy's sequence counts as sized for it


def find_cause(module: str, nodes: list[onnx.NodeProto], modules: dict, loaded: LoadedModel,
               prefix: tuple[str, str], atol: float, inputs: list[str] = (),
               agreed: frozenset[str] = frozenset(),
               run_sizes: dict[str, set[int]] | None = None) -> str | None:
    """Args:
        modules: the reference's modules by name.
        inputs: the values entering the module's scope.
        agreed: values that agreed with their module's output: the upstream walk stops there.
        run_sizes: role -> the sizes the runs had; a dummy size every run shared cannot
            explain a divergence, so that role is not looked for.
    """
    dummy = _dummy_sizes(loaded, run_sizes or {})
    return (_epsilon(nodes, modules, prefix) or _dummy_constant(nodes, loaded, dummy)
            or _truncating_division(nodes, loaded)
            or _sized_upstream(inputs, agreed, loaded, dummy)
            or _weights(module, nodes, modules, loaded, atol))


def _dummy_sizes(loaded: LoadedModel, run_sizes: dict[str, set[int]]) -> dict[str, int]:
    """The export dummy's sizes by role, less those every run had too."""
    signature = read_signature(loaded.model)
    return {r: signature.dummy[r] for r in ROLES if r in signature.dummy
            and run_sizes.get(r) != {signature.dummy[r]}}


def _truncating_division(nodes, loaded: LoadedModel) -> str | None:
    """A Div whose quotient is cast to an integer type: ONNX's Cast (and integer Div)
    truncate toward zero where PyTorch's floor_divide and `//` floor, so every negative
    non-integral quotient is 1 off (the TorchScript exporter writes floor_divide so)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in loaded.model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {o: n for n in loaded.model.graph.node for o in n.output if o}
    for node in nodes:
        if node.op_type != "Div" or not node.output or not node.input:
            continue
        if _shape_like(node.input[0], producer):
            continue  # a size divided: never negative, so truncating is flooring
        for cast in consumers.get(node.output[0], ()):
            attrs = {a.name: a.i for a in cast.attribute}
            if cast.op_type == "Cast" and attrs.get("to") in _ALL_INTS:
                return (f"Div {node.name} is cast to an integer by {cast.name}: ONNX truncates "
                        "toward zero where PyTorch's floor_divide (//) floors, so negative "
                        "quotients differ by 1")
    return None


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


def _dummy_constant(nodes, loaded: LoadedModel, dummy: dict[str, int]) -> str | None:
    """Recorded dummy sizes (metadata, static inputs) count anywhere in a small constant;
    guessed ones (the 2x8 default) only as a `[batch, sequence, ...]` shape, since 2 and 8
    are everywhere."""
    signature = read_signature(loaded.model)
    if not dummy:
        return None
    recorded = signature.dummy_source in ("metadata", "static inputs")
    # guessed sizes count only as the whole [batch, sequence] pair, even when one of them
    # is a size the runs shared (only the other is then reported)
    pattern = [signature.dummy.get("batch"), signature.dummy.get("sequence")]
    initializers = {t.name: t for t in loaded.model.graph.initializer}
    constants = {n.output[0]: n for n in loaded.model.graph.node
                 if n.op_type == "Constant" and n.output}
    producer = {o: n for n in loaded.model.graph.node for o in n.output if o}
    for node in nodes:
        for position, name in enumerate(node.input):
            if _picks_axis(node, position, producer):
                continue
            values = _small_ints(initializers.get(name), constants.get(name))
            if values is not None and (recorded or values[:2] == pattern):
                for role, size in dummy.items():
                    if size in values:
                        how = "" if recorded else " (the usual default; the file records none)"
                        return (f"constant {name} = {values} read by {node.op_type} "
                                f"{node.name} holds the export dummy's {role} {size}{how}: a "
                                "size frozen at export (python -m diagnostics check finds it, "
                                "repair rewrites it)")
            number = _float_scalar(initializers.get(name), constants.get(name))
            for role, size in dummy.items():
                if recorded and number == size and size >= _ARITHMETIC:
                    return (f"constant {name} = {number:g} read by {node.op_type} {node.name} "
                            f"is the export dummy's {role} {size}: a size taken as a Python "
                            "number and frozen into arithmetic at export (not a shape: check "
                            "does not see it; compute it from the tensor, e.g. x.size(1), "
                            "not int(x.size(1)))")
    return None


def _float_scalar(tensor: onnx.TensorProto | None, constant: onnx.NodeProto | None
                  ) -> float | None:
    if tensor is None and constant is not None:
        attrs = {a.name: a for a in constant.attribute}
        if "value_float" in attrs:
            return float(attrs["value_float"].f)
        tensor = attrs["value"].t if "value" in attrs else None
    if tensor is None or tensor.data_type not in _FLOATS or np.prod(tensor.dims) != 1 \
            or tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    return float(numpy_helper.to_array(tensor).reshape(-1)[0])


def _picks_axis(node: onnx.NodeProto, position: int, producer: dict[str, onnx.NodeProto]
                ) -> bool:
    """The input names an axis (an Unsqueeze's axes, an index into a shape), not a size."""
    if node.op_type == "Gather" and position == 1:
        return bool(node.input) and _shape_like(node.input[0], producer)
    return _AXES.get(node.op_type) == position


def _shape_like(value: str, producer: dict[str, onnx.NodeProto], depth: int = 8) -> bool:
    """A vector of sizes: a Shape, or sizes taken from one and put together again (Gather,
    Unsqueeze, Concat, Slice, Cast), as the TorchScript exporter builds `x.size()`."""
    node = producer.get(value)
    if node is None or depth == 0:
        return False
    if node.op_type == "Shape":
        return True
    if node.op_type == "Concat":  # one size from a shape makes the vector a shape
        return any(_shape_like(v, producer, depth - 1) for v in node.input)
    if node.op_type in ("Gather", "Unsqueeze", "Slice", "Cast", "Squeeze") and node.input:
        return _shape_like(node.input[0], producer, depth - 1)
    return False


def _sized_upstream(inputs, agreed: frozenset[str], loaded: LoadedModel,
                    dummy: dict[str, int]) -> str | None:
    """An integer constant with a dim of k x the recorded dummy sequence, in the nodes
    that compute the module's inputs (stopping at values that agreed)."""
    signature = read_signature(loaded.model)
    sequence = dummy.get("sequence")
    if signature.dummy_source not in ("metadata", "static inputs") or not sequence \
            or sequence < 5:
        return None  # a guessed or tiny sequence size is everywhere
    graph = loaded.model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    initializers = {t.name: t for t in graph.initializer}
    queue, seen, walked = list(inputs), set(inputs), 0
    while queue and walked < _UPSTREAM:
        value = queue.pop(0)
        node = producer.get(value)
        tensor = initializers.get(value)
        if node is not None and node.op_type == "Constant":
            attrs = {a.name: a for a in node.attribute}
            tensor = attrs["value"].t if "value" in attrs else None
        if tensor is not None:
            found = _sized_for(tensor, sequence)
            if found:
                return (f"constant {value} of shape {list(tensor.dims)} ({found}) computes "
                        f"an input of this module: values computed for the export dummy's "
                        f"sequence {sequence} in Python and frozen at export")
            continue
        if node is None:
            continue
        walked += 1
        for name in node.input:
            if name and name not in seen and name not in agreed:
                seen.add(name)
                queue.append(name)
    return None


def _sized_for(tensor: onnx.TensorProto, sequence: int) -> str | None:
    if tensor.data_type not in _INTS:
        return None
    for dim in tensor.dims:
        for k in range(1, _MULTIPLES + 1):
            if dim == k * sequence:
                return f"{dim} = the dummy's sequence" if k == 1 else \
                    f"{dim} = {k} x the dummy's sequence {sequence}"
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
    worst, found = None, set()
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
        if best and best[0] <= atol:
            found.add(best[1])
        elif best and (worst is None or best[0] > worst[0]):
            worst = (best[0], best[1], name)
    # An initializer another parameter holds exactly is that parameter's: this one is not
    # in the graph (Longformer's global-attention weights, unused without a global mask).
    if worst is None or worst[1] in found:
        return None
    full = f"{module}.{worst[2]}" if module else worst[2]
    return f"initializer {worst[1]} differs from parameter {full} by max abs {worst[0]:.3g}"
