"""Probe and verify on the user's own inputs (`--inputs`), not built ones.

Some models take inputs whose values must agree (GLiNER: words_mask numbers the words,
text_lengths counts them, span_idx and span_mask list every span of up to 12 of them);
inputs built from dtypes and ranks cannot, so the probe would prove nothing. Each `.npz`
(numpy.savez, one array per graph input) or dict is one run; batch invariance runs on
each batch, skipping a row whose output alone has another shape (padded to the longest).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from .errors import ShapeSpecError
from .findings import Finding, Probe, ProbeRun
from .loading import LoadedModel
from .probe import _first_line, _link, _named_node, _rows_alone, _session


def load_feeds(model: onnx.ModelProto, sources: Sequence) -> list[tuple[str, dict]]:
    """Inputs to run: `.npz` files (numpy.savez, one array per graph input) or dicts."""
    initializers = {t.name for t in model.graph.initializer}
    names = sorted(i.name for i in model.graph.input if i.name not in initializers)
    feeds = []
    for index, source in enumerate(sources):
        label = f"inputs #{index + 1}"
        if not isinstance(source, dict):
            label = Path(source).name
            try:
                with np.load(source, allow_pickle=False) as data:
                    source = {key: data[key] for key in data.files}
            except OSError as exc:
                raise ShapeSpecError(f"--inputs {label}: {exc.strerror or exc}") from None
            except (ValueError, EOFError, zipfile.BadZipFile):
                raise ShapeSpecError(f"--inputs {label}: not a .npz of arrays (numpy.savez "
                                     "writes one)") from None
        if sorted(source) != names:
            raise ShapeSpecError(f"--inputs {label}: arrays {sorted(source)} are not the "
                                 f"model's inputs {names}")
        feeds.append((label, {k: np.asarray(v) for k, v in source.items()}))
    return feeds


def run_probe_feeds(loaded: LoadedModel, findings: Sequence[Finding],
                    feeds: Sequence[tuple[str, dict]]) -> Probe:
    """Run the model on given inputs (a user's real batches); batch invariance on each. A row
    alone whose output has another shape (GLiNER pads to the longest text) is not compared."""
    from .inputs import read_signature

    if loaded.weights == "missing":
        return Probe(skipped="weights not found: the probe needs them")
    signature = read_signature(loaded.model)
    session = _session(loaded)
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
            message = _first_line(exc)
            node = _named_node(message)
            runs.append(ProbeRun(batch, 0, False, message, node, _link(node, findings), label,
                                 name))
            continue
        runs.append(ProbeRun(batch, 0, True, sizes=label, note=name))
        invariance += [run for run in _rows_alone(session, feed, result, batch, batched, label)
                       if run.error != "output shapes differ"]
    return Probe(tuple(runs), tuple(invariance), given=True)
