"""Capture intermediate values on both sides: forward hooks on every submodule, and the
ONNX graph's values exposed as graph outputs of a copy.

The copy is made from the graph without its weights and run from memory, with
onnxruntime told where the external data lies (its
`session.model_external_initializers_file_folder_path`): weights are never read into
the proto, and nothing is written beside the user's model. A value is exposed only
where its element type is a float type onnx's shape inference (or the file) knows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import CompareRunError, first_line
from ..loading import LoadedModel
from .reference import call_reference

FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
          onnx.TensorProto.BFLOAT16}


@dataclass(frozen=True)
class Call:
    """One module's forward call, as its hook saw it."""

    module: str
    module_class: str
    inputs: tuple[np.ndarray, ...]  # float tensors among args and kwargs
    outputs: tuple[np.ndarray, ...]  # float tensors of the output, in order
    source: str | None  # file:line of the class's forward
    identity: bool = False  # returned its input itself (a dropout in eval)


def capture_torch(module, feed: dict[str, np.ndarray], on_call: Callable[[Call], None]
                  ) -> dict[str, int]:
    """Each module's call count; `on_call` is given every call as it completes (innermost
    first), its arrays views of the live tensors: nothing is kept here, so a forward holds
    no more activations than it would without the hooks."""
    counts: dict[str, int] = {}
    handles = []

    def hook_for(name: str):
        def hook(mod, args, kwargs, output):
            counts[name] = counts.get(name, 0) + 1
            identity = any(output is a for a in (*args, *kwargs.values()))
            on_call(Call(name, type(mod).__name__, tuple(_floats((args, kwargs))),
                         tuple(_floats(output)), forward_source(mod), identity))
        return hook

    for name, sub in module.named_modules():
        handles.append(sub.register_forward_hook(hook_for(name), with_kwargs=True))
    try:
        call_reference(module, feed)
    except Exception as exc:  # the user's module on the model's inputs: a failure is input
        first = first_line(exc, 300)
        raise CompareRunError(f"the reference fails on the inputs: {type(exc).__name__}: "
                              f"{first}") from None
    finally:
        for handle in handles:
            handle.remove()
    return counts


def _floats(value) -> Iterable[np.ndarray]:
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value.detach().float().cpu().numpy()
    elif isinstance(value, dict):  # kwargs, and transformers' ModelOutput (an OrderedDict)
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _floats(item)


def forward_source(module) -> str | None:
    """Where the module's forward is defined: a forward patched onto the instance first,
    through decorators (transformers wraps many forwards)."""
    forward = module.__dict__.get("forward") or type(module).forward
    forward = inspect.unwrap(getattr(forward, "__func__", forward))
    try:
        return f"{inspect.getsourcefile(forward)}:{inspect.getsourcelines(forward)[1]}"
    except (TypeError, OSError):
        return None


def float_types(model: onnx.ModelProto) -> dict[str, int]:
    """Value name -> element type, for the float values the graph (or inference) types."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom domains, odd files: fall back on what the file records
        inferred = model
    graph = inferred.graph
    types = {}
    for info in (*graph.value_info, *graph.output, *graph.input):
        elem = info.type.tensor_type.elem_type
        if info.type.WhichOneof("value") == "tensor_type" and elem in FLOATS:
            types[info.name] = elem
    return types


def run_exposed(loaded: LoadedModel, feed: dict[str, np.ndarray], names: Iterable[str],
                types: dict[str, int]) -> dict[str, np.ndarray]:
    """The graph's values `names` (the typed float ones) and its outputs, on `feed`."""
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(loaded.model)
    present = {o.name for o in copy.graph.output}
    for name in dict.fromkeys(names):
        if name not in present and name in types:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
            present.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if loaded.path is not None:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                         str(loaded.path.parent))
    try:
        session = ort.InferenceSession(copy.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        wanted = [o.name for o in session.get_outputs()]
        values = session.run(wanted, feed)
    except Exception as exc:  # onnxruntime's error types are not exported
        first = first_line(exc, 300)
        raise CompareRunError(f"onnxruntime fails on the inputs: {first} (python -m "
                              "diagnostics check --probe finds shapes frozen at export)") from None
    return {name: np.asarray(value, dtype=np.float32) if np.issubdtype(
        np.asarray(value).dtype, np.floating) else np.asarray(value)
        for name, value in zip(wanted, values, strict=True)}
