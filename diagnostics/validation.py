"""Refuse what an ONNX file declares but is not so, before anything reads or allocates it.

Dims (none negative, rank at most numpy's 64), each tensor's data against its dims,
each node's input count against its schema, one producer per value, the export
dummy recorded in the metadata, and every external data location, which must stay
inside the model's folder (no absolute path, no `..`, no symlink out) with an
offset and length inside its file: onnx and onnxruntime would otherwise read it.
Each check returns the first problem as text; `validate_model` raises it once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import onnx

from .analysis.signature import METADATA, ROLES
from .errors import ModelFileError, UnknownDomainError
from .limits import MAX_BATCH, MAX_RANK, MAX_SEQUENCE, product

# Domains onnxruntime implements; anything else must be defined by the model's functions.
KNOWN_DOMAINS = {
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
    "com.microsoft",
    "com.microsoft.nchwc",
    "com.microsoft.experimental",
}


def validate_model(model: onnx.ModelProto, name: str, path: Path | None) -> None:
    """Raise `ModelFileError` (or `UnknownDomainError`) for the first thing the file
    declares that is not so; `name` says which model, `path` is where it was read (None
    for one in memory: its external data is then not looked for)."""
    graph = model.graph
    if model.ir_version <= 0 or not graph.node or not graph.output:
        raise ModelFileError(f"{name}: not an ONNX model (no graph, or an empty one)")
    problem = _domain_problem(model)
    if problem:
        raise UnknownDomainError(f"{name}: {problem}")
    problem = (_dummy_problem(model) or _value_problem(graph) or _tensor_problem(graph)
               or _arity_problem(model) or _order_problem(graph)
               or _external_problems(graph, path))
    if problem:
        raise ModelFileError(f"{name}: {problem}")


def _dummy_problem(model: onnx.ModelProto) -> str | None:
    """The export dummy the extractor recorded must be a size the probe can build."""
    metadata = {p.key: p.value for p in model.metadata_props}
    for role, most in zip(ROLES, (MAX_BATCH, MAX_SEQUENCE), strict=True):
        key = f"{METADATA}dummy_{role}"
        value = metadata.get(key)
        if value is None:
            continue
        if not re.fullmatch(r"[0-9]{1,12}", value) or not 1 <= int(value) <= most:
            return (f"metadata {key} = {value[:40]!r} is not an export dummy size (a whole "
                    f"number from 1 to {most})")
    return None


def _domain_problem(model: onnx.ModelProto) -> str | None:
    declared = {o.domain for o in model.opset_import}
    defined = {f.domain for f in model.functions}
    for node in model.graph.node:
        domain = node.domain
        if domain in defined or (domain in KNOWN_DOMAINS and (domain in declared or not domain)):
            continue
        why = "no opset imported for it" if domain in KNOWN_DOMAINS else "unknown to onnxruntime"
        return (f"node {node.name or node.op_type!r} ({node.op_type!r}) uses domain "
                f"{domain!r}, {why}")
    return None


def _value_problem(graph: onnx.GraphProto) -> str | None:
    """Graph inputs typed, element types ONNX defines, dims not negative, rank bounded."""
    types = set(onnx.TensorProto.DataType.values())
    initializers = {t.name for t in graph.initializer}
    for role, values in (("input", graph.input), ("output", graph.output),
                         ("value", graph.value_info)):
        for value in values:
            kind = value.type.WhichOneof("value")
            if role == "input" and value.name not in initializers and kind is None:
                return f"graph input {value.name!r} has no type"
            if kind != "tensor_type":
                continue
            tensor = value.type.tensor_type
            if tensor.elem_type not in types:
                return (f"{value.name!r} has element type {tensor.elem_type}, which ONNX "
                        "does not define (a corrupt file?)")
            if role == "input" and tensor.elem_type == onnx.TensorProto.UNDEFINED:
                return f"graph input {value.name!r} has no element type"
            dims = tensor.shape.dim
            if len(dims) > MAX_RANK:
                return f"{value.name!r} has {len(dims)} dims, over the {MAX_RANK} a tensor may have"
            for axis, dim in enumerate(dims if role == "input" else ()):  # what we build
                if dim.HasField("dim_value") and dim.dim_value < 0:
                    return (f"{role} {value.name!r} has dim {axis} = {dim.dim_value}: a dim is "
                            "at least 0")
    return None


_PACKED = {"UINT4", "INT4", "FLOAT4E2M1", "UINT2", "INT2", "FLOAT6E2M3", "FLOAT6E3M2"}


def _tensor_problem(graph: onnx.GraphProto) -> str | None:
    """Every tensor the file holds inline (initializers, Constant values) has the data its
    dims declare: numpy would refuse it, or reshape it wrongly, deep in the analysis."""
    tensors = [("initializer", t) for t in graph.initializer]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                tensors.append((f"node {node.name or node.op_type!r} attribute", attribute.t))
    for what, tensor in tensors:
        problem = tensor_data_problem(tensor)
        if problem:
            return f"{what} {tensor.name!r} {problem}"
    return None


def tensor_data_problem(tensor: onnx.TensorProto) -> str | None:
    """Why `tensor`'s inline data does not match its dims, or None (external data: None)."""
    dims = list(tensor.dims)
    if len(dims) > MAX_RANK:
        return f"has {len(dims)} dims, over the {MAX_RANK} a tensor may have"
    if any(d < 0 for d in dims):
        return f"has a negative dim {dims}"
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    name = onnx.TensorProto.DataType.Name(tensor.data_type) \
        if tensor.data_type in onnx.TensorProto.DataType.values() else None
    if name is None or tensor.data_type == onnx.TensorProto.UNDEFINED:
        return f"has element type {tensor.data_type}, which ONNX does not define"
    if name in _PACKED:
        return None
    count = product(dims)
    if tensor.data_type == onnx.TensorProto.STRING:
        have = len(tensor.string_data)
    elif tensor.raw_data:
        size = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        if len(tensor.raw_data) != count * size:
            return (f"holds {len(tensor.raw_data)} bytes where its dims {dims} need "
                    f"{count * size}: truncated or corrupt")
        return None
    else:
        field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
        have = len(getattr(tensor, field))
        if tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
            have //= 2
    if have != count:
        return f"holds {have} values where its dims {dims} need {count}: truncated or corrupt"
    return None


def _arity_problem(model: onnx.ModelProto) -> str | None:
    """Each standard node has the inputs and outputs its schema requires."""
    opsets = {o.domain or "": o.version for o in model.opset_import}
    version = opsets.get("", opsets.get("ai.onnx", 0))
    schemas: dict[str, object] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or not version:
            continue
        if node.op_type not in schemas:
            try:
                schemas[node.op_type] = onnx.defs.get_schema(node.op_type, version, "")
            except Exception:  # onnx's SchemaError: not a standard op (onnxruntime says so)
                schemas[node.op_type] = None
        schema = schemas[node.op_type]
        if schema is None:
            continue
        given, made = len(node.input), len(node.output)
        if not schema.min_input <= given <= schema.max_input:
            return (f"node {node.name or node.op_type!r} ({node.op_type}) has {given} "
                    f"input(s), its schema takes {schema.min_input} to {schema.max_input}")
        if not schema.min_output <= made <= schema.max_output:
            return (f"node {node.name or node.op_type!r} ({node.op_type}) has {made} "
                    f"output(s), its schema makes {schema.min_output} to {schema.max_output}")
    return None


def _order_problem(graph: onnx.GraphProto) -> str | None:
    """Every value read is produced earlier, each exactly once; every output is produced."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        for value in node.input:
            if value not in known:
                return (f"node {node.name or node.op_type!r} reads {value!r}, which no "
                        "earlier node produces (a truncated or unsorted graph)")
        for value in node.output:
            if value and value in known:
                return (f"node {node.name or node.op_type!r} produces {value!r} again (each "
                        "value has one producer)")
        known.update(node.output)
    for output in graph.output:
        if output.name not in known:
            return f"graph output {output.name!r} is never produced"
    return None


def _external_problems(graph: onnx.GraphProto, path: Path | None) -> str | None:
    tensors = list(graph.initializer) + [
        a.t for node in graph.node for a in node.attribute
        if a.type == onnx.AttributeProto.TENSOR]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            problem = external_problem(tensor, None if path is None else path.parent)
            if problem:
                return f"tensor {tensor.name!r} {problem}"
    return None


def location_problem(location: str) -> str | None:
    """Why `location` may not be followed from the model's folder (on its text alone)."""
    if not location:
        return "has external data without a location"
    parts = re.split(r"[/\\]", location)
    if "\0" in location or len(location) > 4096 or any(len(p.encode()) > 255 for p in parts):
        return f"has an external data location that is no file name ({location[:60]!r}...)"
    if (os.path.isabs(location) or location.startswith(("/", "\\"))
            or re.match(r"[A-Za-z]:", location)):
        return f"reads external data from {location[:200]!r}, an absolute path: refused"
    if ".." in parts:
        return (f"reads external data from {location[:200]!r}, outside the model's folder: "
                "refused")
    return None


def external_problem(tensor: onnx.TensorProto, directory: Path | None) -> str | None:
    """Why the tensor's external data may not be read, or None: a location outside the
    model's folder (absolute, `..`, or a symlink out), or an offset or length that is not a
    whole number inside the file."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    problem = location_problem(location)
    if problem:
        return problem
    numbers = {}
    for key in ("offset", "length"):
        if key in info:
            if not re.fullmatch(r"[0-9]{1,19}", info[key].strip()):
                return (f"has external data {key} {info[key][:40]!r}: a whole number from 0 "
                        "is needed")
            numbers[key] = int(info[key])
    if directory is None:
        return None
    try:
        folder = directory.resolve()
        target = (directory / location).resolve()
        if target != folder and folder not in target.parents:
            return (f"reads external data from {location[:200]!r}, which resolves outside the "
                    "model's folder (a symlink?): refused")
        if not target.is_file():
            return None  # missing: a note for the static check, a skipped probe
        size = target.stat().st_size
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return f"reads external data from {location[:200]!r}, which cannot be followed ({why})"
    offset, length = numbers.get("offset", 0), numbers.get("length")
    end = offset + (length if length is not None else 0)
    if offset > size or end > size:
        return (f"reads bytes {offset} to {end} of {location[:200]!r}, which has {size}: "
                "past its end")
    return None
