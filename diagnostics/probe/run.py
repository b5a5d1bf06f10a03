"""Prove frozen shapes by running the model in onnxruntime at shapes the dummy never had.

Text encoders run at (batch, sequence) pairs; any other model at sizes for each of
its symbols (`run_probe_any`: batch 1 and 3, other sizes than the dummy), with
inputs built from each input's dtype and rank (`probe_feeds`), at sizes the graph allows
(a convolution's minimum, a position table's length); or on the user's own inputs
(`run_probe_feeds`), for models whose inputs must agree in value (GLiNER's).

Every shape runs, whatever failed before; each onnxruntime error is turned into the
node it names and linked to the static finding for that node; when the first run
fails with nothing to explain it, the built inputs are not ones the model takes and
the probe is inconclusive (`Probe.inconclusive`). Batch invariance: a
row run alone must give what it gives inside a batch, which catches frozen shapes
that run without error but mix rows (the `[2, 8, -1, 32]` form).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import onnx

from ..analysis.frozen import interpret
from ..analysis.signature import read_signature
from ..errors import ShapeSpecError
from ..findings import Finding, InvarianceRun, Probe, ProbeRun
from ..limits import MAX_BATCH, MAX_SEQUENCE, MAX_TOKENS
from ..loading import LoadedModel
from .feeds import (
    DEFAULT_SIZE,
    any_feed,
    feed_fits,
    input_shapes,
    text_feed,
    text_inputs,
    text_vocab,
    unbuildable,
    with_sums,
)

_NODE = re.compile(r"running (\w+) node\. Name:'([^']*)'")
_INPUT = re.compile(r"invalid dimensions for input: (\S+)")
_ATOL = 1e-4
_RTOL = 1e-3
_INVARIANCE_RUNS = 2


def parse_shapes(text: str) -> list[tuple[int, int]] | list[dict[str, int]]:
    """ "1x8,2x16" -> [(1, 8), (2, 16)]; "batch=1,height=64;batch=3,height=96" -> sizes."""
    if "=" in text:
        return [_parse_sizes(part) for part in text.split(";") if part.strip()]
    shapes = []
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d{1,9})[xX*](\d{1,9})", part)
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            raise ShapeSpecError(f"bad probe shape {part!r}: write BATCHxSEQUENCE, e.g. 1x8,4x128")
        batch, sequence = int(match[1]), int(match[2])
        if batch > MAX_BATCH or sequence > MAX_SEQUENCE or batch * sequence > MAX_TOKENS:
            raise ShapeSpecError(f"probe shape {part!r} is out of range (batch up to {MAX_BATCH}, "
                                 f"sequence up to {MAX_SEQUENCE}, {MAX_TOKENS} tokens in all)")
        shapes.append((batch, sequence))
    return shapes


def _parse_sizes(text: str) -> dict[str, int]:
    sizes = {}
    for item in text.replace(" ", "").split(","):
        match = re.fullmatch(r"([A-Za-z_][\w.]{0,63})=(\d{1,9})", item)
        if not match or int(match[2]) < 1 or int(match[2]) > MAX_SEQUENCE:
            raise ShapeSpecError(f"bad probe sizes {item!r}: write NAME=N,...;NAME=N,... e.g. "
                                 "batch=1,height=64;batch=3,height=96")
        sizes[match[1]] = int(match[2])
    return sizes


def default_shapes(dummy: dict[str, int], longest: int | None = None) -> list[tuple[int, int]]:
    """The export dummy, batch 1, and other pairs including a long sequence (at most
    `longest`: the rows of a position table the graph slices by the sequence)."""
    batch, sequence = dummy.get("batch", 2), dummy.get("sequence", 8)
    wanted = [(batch, sequence), (1, sequence), (1, 5), (batch + 1, sequence + 3), (4, 4), (2, 128)]
    return list(dict.fromkeys((b, min(s, longest or s)) for b, s in wanted))


def run_probe(
    loaded: LoadedModel,
    findings: Sequence[Finding],
    shapes: Sequence[tuple[int, int]],
    seed: int = 0,
    budget: int | None = None,
) -> Probe:
    """Args:
        budget: the most bytes one probe input may take (default: `limits.max_memory()`);
            a shape past it raises `ResourceLimitError` before anything is built.
    """
    if loaded.weights == "missing":
        files = ", ".join(loaded.missing) or "external data"
        return Probe(skipped=f"weights not found ({files}): the probe needs them")
    inputs = text_inputs(loaded.model)
    if isinstance(inputs, str):
        return run_probe_any(loaded, findings, [s for s in shapes if isinstance(s, dict)], seed,
                             budget)
    for batch, sequence in shapes:
        feed_fits(inputs, batch, sequence, budget)
    session = open_session(loaded)
    if isinstance(session, Probe):
        return session
    vocab, tables = text_vocab(loaded.model, inputs), _tables(loaded.model)
    runs, outputs = [], {}
    for batch, asked in shapes:
        sequence, note = asked, None
        while True:
            feed = text_feed(inputs, batch, sequence, vocab, seed)
            try:
                outputs[(batch, sequence)] = (feed, session.run(None, feed))
                runs.append(ProbeRun(batch, sequence, True, note=note))
            except Exception as exc:  # keep going past failures: the matrix is the point
                message = first_line(exc)
                node = named_node(message)
                if _past_table(message, node, tables) and sequence > 1:
                    sequence //= 2  # the model's own length limit: try within it
                    note = f"{batch}x{asked} is past the end of {node}'s table"
                    continue
                runs.append(ProbeRun(batch, sequence, False, message, node,
                                     link_finding(node, findings), note=note))
            break
    invariance = []
    for (batch, sequence), (feed, result) in outputs.items():
        if batch < 2 or len(invariance) >= _INVARIANCE_RUNS * 2:
            continue
        for row in (0, batch - 1):
            invariance.append(_row_alone(session, feed, result, batch, sequence, row))
    return Probe(tuple(runs), tuple(invariance))


def open_session(loaded: LoadedModel):
    """An onnxruntime session on the CPU, or a skipped Probe saying why it cannot load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    source = str(loaded.path) if loaded.path else loaded.model.SerializeToString()
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types are not exported
        return Probe(skipped=f"onnxruntime cannot load the model: {first_line(exc)}")


def _row_alone(session, feed, batched, batch: int, sequence: int, row: int,
               single: dict | None = None) -> InvarianceRun:
    """`single`: the row's inputs, where not every input is batched on axis 0."""
    single = single or {name: value[row : row + 1] for name, value in feed.items()}
    try:
        alone = session.run(None, single)
    except Exception as exc:  # a row alone is batch 1: it may fail where the batch ran
        return InvarianceRun(batch, sequence, row, False, None, first_line(exc))
    worst, ok = 0.0, True
    for full, one in zip(batched, alone, strict=True):
        if full.ndim == 0 or full.shape[0] != batch:
            continue
        if one.shape[1:] != full.shape[1:]:
            return InvarianceRun(batch, sequence, row, False, None, "output shapes differ")
        expected = full[row : row + 1].astype(np.float64)
        diff = np.abs(one.astype(np.float64) - expected)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        ok = ok and bool(np.all(diff <= _ATOL + _RTOL * np.abs(expected)))
    return InvarianceRun(batch, sequence, row, ok, worst)


def _tables(model: onnx.ModelProto) -> set[str]:
    """Gather nodes reading a constant table (positions, vocabulary): indices past its end
    are past the model's own limit (64 positions), not a frozen shape."""
    constant = {t.name for t in model.graph.initializer}
    constant |= {out for node in model.graph.node if node.op_type == "Constant"
                 for out in node.output}
    return {node.name for node in model.graph.node
            if node.op_type == "Gather" and node.input[0] in constant}


def _past_table(message: str, node: str | None, tables: set[str]) -> bool:
    return node in tables and "out of data bounds" in message


def named_node(message: str) -> str | None:
    """The node (or input) an onnxruntime error names, or None."""
    match = _NODE.search(message) or _INPUT.search(message)
    if match is None:
        return None
    return match[2] if match.re is _NODE else match[1]


def link_finding(node: str | None, findings: Sequence[Finding]) -> int | None:
    """The finding for the failing node: the node itself, where it met a symbol, or its module."""
    if node is None:
        return None
    for index, finding in enumerate(findings):
        if finding.node == node:
            return index
    for index, finding in enumerate(findings):
        if node in finding.meets:
            return index
    scope = node.rsplit("/", 1)[0] if node.startswith("/") else None
    for index, finding in enumerate(findings):
        if scope and finding.node.startswith(scope + "/"):
            return index
    return None


def first_line(exc: Exception) -> str:
    """An error as one line of at most 1000 characters, for a report row."""
    text = str(exc).strip()
    return " ".join(text.split())[:1000]


# -- any model ---------------------------------------------------------------------------------

_SPATIAL = 32  # the base size of an image axis whose dummy is unknown (others: DEFAULT_SIZE)
_LARGEST = 2048  # ... doubled up to this while the model needs more


def default_sizes(model: onnx.ModelProto, dummy: dict[str, int] | None = None,
                  interpreter=None) -> list[dict[str, int]]:
    """The dummy (recorded, static or given), then batch 1 and 3 with the others moved.

    Symbols whose dummy is unknown start at 32 (image axes) or 16 and are doubled (up to
    2048) while a size the graph derives from them (a strided convolution's output) would be
    below 1 (a strided convolution stack needs more than 16 samples). Sizes moved off the
    dummy stay within what the graph bounds (a position table sliced by the sequence).
    """
    signature = read_signature(model, dummy)
    ranks = {t.name: len(t.dims) for t in signature.inputs}
    base: dict[str, int] = {}
    unknown = set()
    for symbol in signature.symbols:
        if "+" in symbol.name:
            continue
        batch = symbol.role == "batch" or symbol.name == "batch"
        spatial = ranks.get(symbol.input, 0) >= 4 and symbol.axis >= 2
        base[symbol.name] = symbol.dummy or (2 if batch else _SPATIAL if spatial else DEFAULT_SIZE)
        if symbol.dummy is None and not batch:
            unknown.add(symbol.name)
    if interpreter is None:
        interpreter = interpret(model, LoadedModel(model, None, "inline").read_tensor,
                                signature)[0]
    while unknown and max(base[k] for k in unknown) < _LARGEST:
        smallest = interpreter.smallest_derived(with_sums(signature, base))
        if smallest is None or smallest >= 1:
            break
        base = {k: v * 2 if k in unknown else v for k, v in base.items()}
    moved = {k: v if k == "batch" else min(v + (_SPATIAL if v >= _SPATIAL else 5),
                                           interpreter.limits.get(k, 1 << 30))
             for k, v in base.items()}
    trials = [base, {**moved, "batch": 1} if "batch" in base else moved]
    if "batch" in base:
        trials.append({**base, "batch": 3})
    return list({tuple(sorted(t.items())): t for t in trials}.values())


def run_probe_any(loaded: LoadedModel, findings: Sequence[Finding],
                  trials: Sequence[dict[str, int]], seed: int = 0,
                  budget: int | None = None) -> Probe:
    """Run any model at sizes per symbol; batch invariance where a batch symbol exists."""
    unbuilt = unbuildable(loaded.model)
    if unbuilt:
        return Probe(skipped=unbuilt)
    signature = read_signature(loaded.model)
    trials = list(trials) or default_sizes(loaded.model)
    for sizes in trials:  # every trial's inputs must fit before any is built
        input_shapes(loaded.model, signature, with_sums(signature, sizes), budget)
    session = open_session(loaded)
    if isinstance(session, Probe):
        return session
    runs, invariance = [], []
    tables = _tables(loaded.model)
    for asked in trials:
        sizes, note = {k: v for k, v in asked.items() if "+" not in k}, None
        while True:
            label = tuple(sorted(sizes.items()))
            feed, batched = any_feed(loaded.model, signature, with_sums(signature, sizes), seed,
                                     budget)
            batch = sizes.get("batch", 0)
            try:
                result = session.run(None, feed)
            except Exception as exc:  # keep going past failures: the matrix is the point
                message = first_line(exc)
                node = named_node(message)
                smaller = {k: v if k == "batch" else max(1, v // 2) for k, v in sizes.items()}
                if _past_table(message, node, tables) and smaller != sizes:
                    note = f"{', '.join(f'{k}={v}' for k, v in asked.items() if '+' not in k)} "
                    note += f"is past the end of {node}'s table"
                    sizes = smaller  # the model's own limit: try within it
                    continue
                result = None
                runs.append(ProbeRun(batch, 0, False, message, node, link_finding(node, findings),
                                     label, note))
            break
        if result is None:
            continue
        runs.append(ProbeRun(batch, 0, True, sizes=label, note=note))
        if len(invariance) < _INVARIANCE_RUNS * 2:
            invariance += rows_alone(session, feed, result, batch, batched, label)
    return Probe(tuple(runs), tuple(invariance))


def rows_alone(session, feed, result, batch: int, batched: set[str], label
                ) -> list[InvarianceRun]:
    """The first and last rows of a batch run alone (inputs batched on axis 0 cut)."""
    if batch < 2 or not batched:
        return []
    out = []
    for row in (0, batch - 1):
        single = {k: v[row: row + 1] if k in batched else v for k, v in feed.items()}
        run = _row_alone(session, feed, result, batch, 0, row, single)
        out.append(InvarianceRun(run.batch, 0, row, run.ok, run.max_abs, run.error, label))
    return out


