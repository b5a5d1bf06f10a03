"""Load an ONNX graph without its weights, and refuse what is not a usable model.

External data is never read for the static check (models over 2 GB stay cheap);
only small integer tensors (shape constants) are read from it when present. A
missing external data file is a note, not an error: the probe needs it, the
static check does not.

Here: recognising the file by its bytes, parsing it, checking its strings are
UTF-8, finding its external data and naming unnamed nodes. What the file declares
is validated by `validation.validate_model` before anything reads or allocates it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from onnx import external_data_helper, numpy_helper

from .errors import ModelFileError, first_line
from .file_kinds import describe
from .validation import location_problem, validate_model


@dataclass(frozen=True)
class LoadedModel:
    model: onnx.ModelProto
    path: Path | None  # None when given a ModelProto
    weights: str  # "inline", "external" or "missing"
    missing: tuple[str, ...] = ()  # external data files that are not there

    @property
    def name(self) -> str:
        return str(self.path) if self.path else (self.model.graph.name or "<in-memory model>")

    def read_tensor(self, tensor: onnx.TensorProto) -> np.ndarray | None:
        """A tensor's values, from external data if need be; None when they are not here."""
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor)
        if self.path is None or self.weights == "missing":
            return None
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        try:
            external_data_helper.load_external_data_for_tensor(copy, str(self.path.parent))
        except (OSError, ValueError):
            return None
        return numpy_helper.to_array(copy)


def load_model(source: str | os.PathLike[str] | onnx.ModelProto) -> LoadedModel:
    """Load and validate; raises `ModelFileError` or `UnknownDomainError` for bad input."""
    if isinstance(source, onnx.ModelProto):
        loaded = LoadedModel(source, None, _weights(source, None)[0])
    else:
        path = Path(source)
        if not path.exists():
            raise ModelFileError(f"{path}: no such file")
        if path.is_dir():
            candidate = path / "model.onnx"
            if not candidate.is_file():
                raise ModelFileError(f"{path} is a directory without model.onnx")
            path = candidate
        _recognise(path)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except DecodeError as exc:
            raise ModelFileError(f"{path}: not an ONNX model or truncated ({exc})") from None
        except Exception as exc:  # it looked like ONNX: whatever the parser says is the file's
            first = first_line(exc)
            raise ModelFileError(f"{path}: cannot read it as ONNX ({first})") from None
        _check_strings(model, path)
        weights, missing = _weights(model, path.parent)
        loaded = LoadedModel(model, path, weights, missing)
    validate_model(loaded.model, loaded.name, loaded.path)
    return _named(loaded)


def _named(loaded: LoadedModel) -> LoadedModel:
    """Every node named: findings, repair's anchors and Netron refer to nodes by name,
    and an exporter may leave names empty (then every finding said `node ''` and repair
    refused them all). Empty names become `<op_type>_<index>`; a model given in memory
    is copied first, never changed."""
    if all(node.name for node in loaded.model.graph.node):
        return loaded
    model = loaded.model
    if loaded.path is None:
        model = onnx.ModelProto()
        model.CopyFrom(loaded.model)
    taken = {node.name for node in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return replace(loaded, model=model)


def _check_strings(model: onnx.ModelProto, path: Path) -> None:
    """Check every string field now: protobuf returns a proto2 string that is not UTF-8
    as bytes, and it would surface as a UnicodeDecodeError deep in the analysis."""
    try:
        _touch_strings(model)
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: corrupt (a name or text field is not UTF-8 at byte "
                             f"{exc.start})") from None


def _touch_strings(message: Message) -> None:
    for descriptor, value in message.ListFields():
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if _repeated(descriptor) else (value,):
                _touch_strings(item)
        elif descriptor.type == FieldDescriptor.TYPE_STRING:
            for item in value if _repeated(descriptor) else (value,):
                if isinstance(item, bytes):  # proto2 hands invalid UTF-8 back as bytes
                    item.decode("utf-8")


def _repeated(descriptor: FieldDescriptor) -> bool:
    if hasattr(descriptor, "is_repeated"):  # protobuf >= 5.28
        return bool(descriptor.is_repeated)
    return descriptor.label == FieldDescriptor.LABEL_REPEATED


def _recognise(path: Path) -> None:
    """Refuse, by its first bytes, a file that is something other than ONNX."""
    try:
        kind = describe(path)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (RecursionError, ValueError):  # a parser inside gave up on what it was shown
        kind = "a file of no known kind (nested or malformed text)"
    if kind == "an ONNX model" or kind.startswith("binary data"):
        return  # protobuf has no magic number: the parser and the checks below decide
    torch_like = kind in ("a zip", "a safetensors file", "a PyTorch checkpoint (legacy format)")
    hint = "; python -m extractor reads checkpoints" if torch_like else ""
    raise ModelFileError(f"{path} is {kind}, not an ONNX model{hint}")


def _weights(model: onnx.ModelProto, directory: Path | None) -> tuple[str, tuple[str, ...]]:
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            locations.add(info.get("location", ""))
    if not locations:
        return "inline", ()
    if directory is None:
        return "missing", tuple(sorted(locations))
    missing = tuple(sorted(loc for loc in locations if not _is_file(_inside(directory, loc))))
    return ("missing" if missing else "external"), missing


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long, a loop of symlinks: not a file we can read
        return False


def _inside(directory: Path, location: str) -> Path:
    """The external data file at `location`, or the folder itself where the location may
    not be followed (`validation.external_problem` refuses those before anything reads
    them)."""
    if location_problem(location) is not None:
        return directory
    return directory / location
