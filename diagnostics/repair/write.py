"""Write a repaired model to its output as one unit with its weights, through `atomic`.

The model is staged under a hidden name beside the output; weights that must travel
are written once, under a name that carries their hash, so committing is one rename
of the model: a reader sees the old output or the new one, never a mix. Whether to
commit is `plan`'s call, once `verify` has run on the staged file.

Moving the weights is onnx-ir's: `ir.from_proto` wraps the repaired protos (external
tensors become `ir.ExternalTensor` references to the original's data file) and `ir.save`
streams them, one tensor at a time, into the staged data file, so the weights are never
all in memory. The staging names and the commit stay `atomic`'s.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir

from .. import atomic
from ..errors import OutputFileError, OutputPathError
from ..loading import LoadedModel
from .edit import keep_layout


def output_path(output: str | os.PathLike[str], loaded: LoadedModel) -> Path:
    """The file to write: `output`, or `model.onnx` in it when it is a folder; never the input."""
    path = Path(output)
    if path.is_dir():
        path = path / "model.onnx"
    if loaded.path is not None and path.resolve() == loaded.path.resolve():
        raise OutputPathError(f"{path}: refusing to overwrite the input; name another file")
    return path


@contextlib.contextmanager
def staging(output: Path) -> Iterator[Path]:
    """A staged name beside `output`, gone on leaving whether `commit` moved it or not.

    A folder created for `output` goes again if nothing was committed; what killed runs
    left beside it (staged files, data files no model reads) is cleared before and after.
    """
    staged = atomic.staged_name(output, "staged")
    with atomic.output_folder(output.parent):
        atomic.remove_abandoned(output, data_files)
        try:
            yield staged
        finally:
            _discard(staged)
            atomic.remove_abandoned(output, data_files)  # data files no model reads now


def commit(staged: Path, output: Path) -> None:
    """The one step that switches model and data: the staged model renamed into place."""
    atomic.commit_file(staged, output)


def write_staged(model: onnx.ModelProto, path: Path, loaded: LoadedModel, final: str) -> list[str]:
    """Write the staged model `path` for the output named `final` in the same folder.

    Weights that must travel are written once, under a name that carries their hash
    (`atomic.hashed_data_name`), and the staged model reads them there: committing is
    then one rename of the model, and the model it replaces keeps its own data file.

    Returns:
        Notes on where the output's weights are.
    """
    notes = []
    external = loaded.weights != "inline" and loaded.path is not None
    same_dir = external and path.parent.resolve() == loaded.path.parent.resolve()
    data = atomic.staged_name(path.with_name(final), "data")
    try:
        if external and not same_dir and loaded.weights == "external":
            _save_moving_weights(model, path, loaded.path.parent, data.name)
            written = onnx.load(str(path), load_external_data=False)  # the graph only
            model = keep_layout(written, model)
            hashed = atomic.hashed_data_name(final, data)
            _point_data(model, data.name, hashed)
            if (path.parent / hashed).is_file():  # the same weights are already there
                data.unlink()
            else:
                atomic.commit_file(data, path.parent / hashed)
            onnx.save_model(model, str(path))
            notes.append(f"weights written to {hashed} beside the output")
        else:
            if external and not same_dir:  # never a location outside the output's folder
                names = ", ".join(sorted(loaded.missing)) or "its data file"
                notes.append(f"weights not found: the output reads {names} beside it; put "
                             "the original's weights there")
            elif same_dir:
                notes.append("the output reads the original's external data file")
            onnx.save_model(model, str(path))
    except OSError as exc:
        raise OutputFileError(
            f"cannot write {path.with_name(final)}: {atomic.os_reason(exc)}; nothing was written"
        ) from None
    finally:
        if data.exists():
            data.unlink()
    return notes


def _save_moving_weights(model: onnx.ModelProto, path: Path, source: Path, data: str) -> None:
    """Save `model` to `path` with every weight in the data file `data` beside it, read
    tensor by tensor from the original's data files in `source` (memory-mapped, not loaded).
    `model` is not modified: its protos are wrapped, not copied."""
    moved = ir.from_proto(model)
    ir.external_data.set_base_dir(moved.graph, source)
    ir.save(moved, path, external_data=data)


def data_files(path: Path) -> set[str] | None:
    """The external data files the model at `path` reads (None: it cannot be read)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a file we did not write, or a cut one: it may read anything
        return None
    return {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
            if entry.key == "location"}


def with_weights(model: onnx.ModelProto, loaded: LoadedModel) -> onnx.ModelProto:
    """`model` holding its external weights, to run in memory."""
    if loaded.weights != "external" or loaded.path is None:
        return model
    model = copy.deepcopy(model)
    onnx.load_external_data_for_model(model, str(loaded.path.parent))
    return model


def _point_data(model: onnx.ModelProto, old: str, new: str) -> None:
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new


def _discard(staged: Path) -> None:
    if staged.exists():
        staged.unlink()
