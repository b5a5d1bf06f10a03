"""Probe and verify on the user's own inputs (`--inputs`), not built ones.

Some models take inputs whose values must agree (GLiNER: words_mask numbers the words,
text_lengths counts them, span_idx and span_mask list every span of up to 12 of them);
inputs built from dtypes and ranks cannot, so the probe would prove nothing. Each `.npz`
(numpy.savez, one array per graph input) or dict is one run; batch invariance runs on
each batch, skipping a row whose output alone has another shape (padded to the longest).

Before numpy reads an `.npz`, what it declares is checked against the memory budget:
each member's size in the zip's directory, and each `.npy` header's shape and dtype (a
header may declare 2**40 rows over 16 bytes of data); then each array's dtype and rank
against the graph input it feeds.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from ..analysis.signature import read_signature
from ..errors import ResourceLimitError, ShapeSpecError
from ..findings import Finding, Probe, ProbeRun
from ..limits import human, max_memory, product, too_large
from ..loading import LoadedModel
from .run import first_line, link_finding, named_node, open_session, rows_alone

_UNREADABLE = (ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
               RuntimeError, KeyError, OverflowError)


def load_feeds(model: onnx.ModelProto, sources: Sequence, budget: int | None = None
               ) -> list[tuple[str, dict]]:
    """Inputs to run: `.npz` files (numpy.savez, one array per graph input) or dicts.

    Raises:
        ShapeSpecError: not a `.npz` of arrays, or arrays that are not the model's inputs.
        ResourceLimitError: an array would need more than `budget` bytes.
    """
    budget = max_memory(budget)
    initializers = {t.name for t in model.graph.initializer}
    names = sorted(i.name for i in model.graph.input if i.name not in initializers)
    feeds = []
    for index, source in enumerate(sources):
        label = f"inputs #{index + 1}"
        if not isinstance(source, dict):
            label = Path(source).name
            try:
                npz_fits(source, label, budget)
                with np.load(source, allow_pickle=False) as data:
                    source = {key: data[key] for key in data.files}
            except OSError as exc:
                raise ShapeSpecError(f"--inputs {label}: {exc.strerror or exc}") from None
            except _UNREADABLE:
                raise ShapeSpecError(f"--inputs {label}: not a .npz of arrays (numpy.savez "
                                     "writes one)") from None
        if sorted(source) != names:
            raise ShapeSpecError(f"--inputs {label}: arrays {sorted(source)[:8]} are not the "
                                 f"model's inputs {names[:8]}")
        arrays = {k: np.asarray(v) for k, v in source.items()}
        _check_types(model, arrays, label)
        feeds.append((label, arrays))
    return feeds


def npz_fits(path, label: str, budget: int) -> None:
    """Refuse, from the zip's directory and each `.npy` header, an `.npz` whose arrays would
    not fit `budget` or that declares more data than it holds (nothing is decompressed but
    the headers)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            total += info.file_size
            problem = too_large(f"--inputs {label}: member {info.filename[:80]!r} (its "
                                "unpacked size, as the zip declares it)", info.file_size, budget)
            problem = problem or too_large(f"--inputs {label}: its members ({human(total)} "
                                           "unpacked)", total, budget)
            if problem:
                raise ResourceLimitError(problem)
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(member)
                header = member.tell()
            name = info.filename[:-4][:80]
            if dtype.hasobject:
                raise ShapeSpecError(f"--inputs {label}: array {name!r} holds Python objects "
                                     "(not read: it would need pickle)")
            nbytes = product(shape) * dtype.itemsize
            problem = too_large(f"--inputs {label}: array {name!r} of shape {tuple(shape)} "
                                f"{dtype}", nbytes, budget)
            if problem:
                raise ResourceLimitError(problem)
            if header + nbytes > info.file_size:
                raise ShapeSpecError(f"--inputs {label}: array {name!r} declares shape "
                                     f"{tuple(shape)} ({human(nbytes)}) but holds "
                                     f"{human(max(0, info.file_size - header))}: truncated")


def _check_types(model: onnx.ModelProto, arrays: dict[str, np.ndarray], label: str) -> None:
    """Each array has its graph input's dtype and rank (onnxruntime would say it less plainly)."""
    for tensor in model.graph.input:
        array = arrays.get(tensor.name)
        if array is None or tensor.type.WhichOneof("value") != "tensor_type":
            continue
        kind = tensor.type.tensor_type
        try:
            wanted = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type))
        except (KeyError, TypeError, ValueError):
            continue
        if kind.elem_type == onnx.TensorProto.STRING:
            ok = array.dtype.kind in "OUS"
        else:
            ok = array.dtype == wanted
        if not ok:
            raise ShapeSpecError(f"--inputs {label}: {tensor.name!r} is {array.dtype}, the "
                                 f"model takes {wanted}")
        rank = len(kind.shape.dim)
        if kind.HasField("shape") and array.ndim != rank:
            raise ShapeSpecError(f"--inputs {label}: {tensor.name!r} has {array.ndim} dims, "
                                 f"the model takes {rank}")


def run_probe_feeds(loaded: LoadedModel, findings: Sequence[Finding],
                    feeds: Sequence[tuple[str, dict]]) -> Probe:
    """Run the model on given inputs (a user's real batches); batch invariance on each. A row
    alone whose output has another shape (GLiNER pads to the longest text) is not compared."""
    if loaded.weights == "missing":
        return Probe(skipped="weights not found: the probe needs them")
    signature = read_signature(loaded.model)
    session = open_session(loaded)
    if isinstance(session, Probe):
        return session
    batched = {name for name, dims in signature.seeds.items()
               if dims and dims[0].expr is not None and "batch" in dims[0].expr.symbols}
    runs, invariance = [], []
    for name, feed in feeds:
        sizes = {}
        for tensor, dims in signature.seeds.items():
            for axis, dim in enumerate(dims):
                if dim.expr is not None and dim.expr.single and axis < feed[tensor].ndim:
                    sizes.setdefault(dim.expr.single, int(feed[tensor].shape[axis]))
        label, batch = tuple(sorted(sizes.items())), sizes.get("batch", 0)
        try:
            result = session.run(None, feed)
        except Exception as exc:  # keep going past failures: the matrix is the point
            message = first_line(exc)
            node = named_node(message)
            runs.append(ProbeRun(batch, 0, False, message, node, link_finding(node, findings),
                                 label, name))
            continue
        runs.append(ProbeRun(batch, 0, True, sizes=label, note=name))
        invariance += [run for run in rows_alone(session, feed, result, batch, batched, label)
                       if run.error != "output shapes differ"]
    return Probe(tuple(runs), tuple(invariance), given=True)
