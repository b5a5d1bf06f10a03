"""Show a checked model in Netron: an annotated copy, and a small neighbourhood of one node.

Netron cannot be deep-linked to a node, so each flagged node carries its finding in
`metadata_props` and `doc_string` (Netron's node sidebar shows both), and the node
around which the failure sits is also served alone with its producers, consumers and
the shape chain that feeds it. The user's file is never written; weights are never
read (external references are kept, large inline tensors are served without values).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
import webbrowser
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import netron
import onnx

from .errors import DiagnosticsError
from .findings import Finding, Report, SymbolInfo
from .loading import load_model

HOST = "127.0.0.1"
PREFIX = "subgraft."
# Inline tensors above this are served without their values: Netron draws the graph from
# names, types and shapes; the values are only read when one clicks a weight.
MAX_INLINE_BYTES = 64 * 1024
# The shape chain of a frozen node stops at Shape/Size (where the data enters) or here.
_MAX_CHAIN = 40
_SHAPE_SOURCES = {"Shape", "Size"}


class ServeError(DiagnosticsError):
    """Netron could not serve: the port is taken, or the focus node is not in the graph."""


@dataclass
class NetronView:
    """A running Netron server (or two): `url` is the annotated copy, `focus_url` the
    neighbourhood of `focus`. `stop()` closes both ports."""

    url: str
    address: tuple[str, int]
    annotated: Path  # the annotated copy as written (small: weights are not in it)
    flagged: tuple[str, ...]  # names to paste into Netron's find box, in finding order
    focus: str | None = None
    focus_url: str | None = None
    focus_address: tuple[str, int] | None = None
    neighbourhood: Path | None = None
    neighbourhood_nodes: int = 0
    browsed: bool = False  # a browser was launched (False without a display or a browser)
    served_bytes: int = 0
    _addresses: list[tuple[str, int]] = field(default_factory=list, repr=False)

    @property
    def alive(self) -> bool:
        return any(netron.status(address) for address in self._addresses)

    def stop(self) -> None:
        """Stop serving; the ports are closed and the server threads done when this returns."""
        for address in self._addresses:
            netron.stop(address)
        deadline = time.monotonic() + 2.0  # a server thread notices within its 0.25 s poll
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait(self) -> None:
        """Block until the servers stop or Ctrl+C; then stop them. Re-raises nothing."""
        try:
            while self.alive:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> NetronView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _repr_html_(self) -> str:  # a notebook shows the viewer inline
        return f'<iframe src="{self.url}" width="100%" height="800"></iframe>'


def default_focus(report: Report) -> str | None:
    """The first flagged node; a static input only when no node is flagged."""
    nodes = [f.node for f in report.findings if f.op_type] or [f.node for f in report.findings]
    return nodes[0] if nodes else None


def find_query(name: str) -> str:
    """What to paste into Netron's find box: quoted, Netron matches the whole name only."""
    return f'"{name}"'


def open_in_netron(
    report: Report,
    model: str | os.PathLike[str] | onnx.ModelProto | None = None,
    *,
    focus: str | None = None,
    port: int = 0,
    browse: bool = True,
    hops: int = 2,
    directory: str | os.PathLike[str] | None = None,
    repairs: Mapping[str, str] | None = None,
) -> NetronView:
    """Serve the annotated copy of the checked model, and the neighbourhood of `focus`.

    Args:
        report: what `check` returned for the model.
        model: the model, when `report.model` is not a path (a model checked in memory).
        focus: the node (or static input) to extract; default: the first flagged node.
        port: for the annotated copy; 0 picks a free one. The neighbourhood gets any free port.
        browse: open the system browser (nothing happens without a display or a browser).
        directory: where to write the two small served files (default: a new temp folder).
        repairs: node -> what repair did to it ("applied: ...", "refused: ..."), shown as
            `subgraft.repair` instead of the suggested repair.

    Raises:
        ServeError: `port` is taken, or `focus` names no node or input of the graph.
    """
    if model is None and not Path(report.model).exists():
        raise ServeError(f"{report.model!r} is not a file: pass the model checked in memory")
    loaded = load_model(report.model if model is None else model)
    out = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="subgraft-netron-"))
    out.mkdir(parents=True, exist_ok=True)
    stem = loaded.path.stem if loaded.path else "model"
    # Served as if it sat next to the model, so Netron can fetch external weights on demand.
    home = loaded.path.parent if loaded.path else out
    annotated = annotate(loaded.model, report, repairs)
    focus = focus if focus is not None else default_focus(report)
    near = neighbourhood(annotated, focus, report, hops) if focus else None

    view_addresses: list[tuple[str, int]] = []
    try:
        data = annotated.SerializeToString()
        annotated_path = _write(out / f"{stem}.annotated.onnx", data)
        address = _serve(home / annotated_path.name, data, port)
        view_addresses.append(address)
        view = NetronView(
            url=_url(address),
            address=address,
            annotated=annotated_path,
            flagged=tuple(dict.fromkeys(f.node for f in report.findings)),
            served_bytes=len(data),
            _addresses=view_addresses,
        )
        if near is not None:
            near_data = near.SerializeToString()
            near_path = _write(out / f"{stem}.{_slug(focus)}.neighbourhood.onnx", near_data)
            near_address = _serve(home / near_path.name, near_data, 0)
            view_addresses.append(near_address)
            view.focus, view.focus_url, view.focus_address = focus, _url(near_address), near_address
            view.neighbourhood, view.neighbourhood_nodes = near_path, len(near.graph.node)
    except BaseException:
        for address in view_addresses:
            netron.stop(address)
        raise
    if browse:
        view.browsed = _browse(view.focus_url or view.url)
    return view


# -- annotation ----------------------------------------------------------------------------


def annotate(
    model: onnx.ModelProto, report: Report, repairs: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """A light copy of `model` whose flagged nodes (and static inputs) carry their finding.

    The copy keeps external data references and drops the values of large inline tensors,
    so it stays small whatever the size of the model; `model` itself is not modified.
    """
    copy = _light_copy(model)
    graph = copy.graph
    nodes = {node.name: node for node in graph.node if node.name}
    inputs = {value.name: value for value in graph.input}
    for index, finding in enumerate(report.findings):
        target = nodes.get(finding.node) or inputs.get(finding.node)
        if target is None:
            continue
        props = finding_props(index, finding, report.symbols, (repairs or {}).get(finding.node))
        existing = {p.key: p for p in target.metadata_props}
        for key, value in props.items():
            if key in existing:  # a node flagged twice: keep both findings
                existing[key].value += f"\n{value}"
            else:
                target.metadata_props.add(key=key, value=value)
        summary = _doc(index, finding, props)
        target.doc_string = f"{summary}\n\n{target.doc_string}" if target.doc_string else summary
    flagged = len({f.node for f in report.findings})
    copy.metadata_props.add(
        key=f"{PREFIX}findings",
        value=f"{len(report.findings)} finding(s) on {flagged} node(s); find them by name "
        "(Ctrl+F) or by searching for 'subgraft'",
    )
    return copy


def finding_props(
    index: int, finding: Finding, symbols: Iterable[SymbolInfo], repair: str | None = None
) -> dict[str, str]:
    """The `metadata_props` of one flagged node, keys prefixed `subgraft.`."""
    props = {
        "finding": f"#{index} {finding.kind}",
        "kind": finding.kind,
        "frozen": _frozen(finding),
        "origin": "; ".join(dict.fromkeys(f.reason for f in finding.frozen)) or finding.reason,
        "reason": finding.reason,
        "source": str(finding.source),
    }
    if finding.source.location:
        props["location"] = finding.source.location
    if finding.source.code:
        props["code"] = finding.source.code
    if finding.meets:
        props["meets"] = ", ".join(finding.meets)
    props["repair" if repair else "suggested repair"] = repair or suggest_repair(finding, symbols)
    return {f"{PREFIX}{key}": value for key, value in props.items()}


def suggest_repair(finding: Finding, symbols: Iterable[SymbolInfo]) -> str:
    """One line: what to compute instead of each frozen value."""
    how = {s.name: f"Shape({s.input})[{s.axis}]" for s in symbols}

    def expression(symbol: str | None) -> str:
        if not symbol:
            return "?"
        parts = [how.get(part, part) for part in symbol.split("*")]
        return f"{symbol} = {' * '.join(parts)}"

    if finding.kind == "static-input":
        axes = ", ".join(f"axis {f.position} -> {f.symbol or '?'}" for f in finding.frozen)
        return f"re-export with dynamic axes for input {finding.node!r}: {axes}"
    values = ", ".join(
        f"[{f.position}] {f.value} -> {expression(f.symbol)}" for f in finding.frozen
    )
    where = f"input {finding.input_index}" if finding.input_index is not None else "the shape"
    if finding.tensor:
        where += f" ({finding.tensor})"
    verb = "recompute" if finding.kind == "folded-constant" else "replace in"
    return f"{verb} {where}: {values or finding.reason}; or run `python -m diagnostics repair`"


def _frozen(finding: Finding) -> str:
    where = ""
    if finding.input_index is not None:
        where = f"input {finding.input_index}"
        if finding.tensor:
            where += f" ({finding.tensor})"
        where += f", {'axes' if finding.part == 'dim' else 'elements'}: "
    return where + (finding.frozen_text or "-")


def _doc(index: int, finding: Finding, props: Mapping[str, str]) -> str:
    lines = [f"subgraft finding #{index}: {finding.kind}", finding.reason]
    for key in ("frozen", "source", "suggested repair", "repair"):
        if f"{PREFIX}{key}" in props:
            lines.append(f"{key}: {props[PREFIX + key]}")
    return "\n".join(lines)


def _light_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """Everything but the values of large inline tensors, without copying those values."""
    copy = onnx.ModelProto()
    _copy_fields(model, copy, skip={"graph"})
    _copy_fields(model.graph, copy.graph, skip={"initializer"})
    for tensor in model.graph.initializer:
        copy.graph.initializer.append(_light_tensor(tensor))
    return copy


def _light_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.ByteSize() <= MAX_INLINE_BYTES:
        return tensor
    light = onnx.TensorProto()
    light.name, light.data_type = tensor.name, tensor.data_type
    light.dims.extend(tensor.dims)
    note = f"values not served by subgraft ({tensor.ByteSize():,} bytes inline in the file)"
    light.doc_string = f"{tensor.doc_string}\n{note}" if tensor.doc_string else note
    return light


def _copy_fields(source, target, skip: set[str]) -> None:  # protobuf messages
    for descriptor, value in source.ListFields():
        if descriptor.name in skip:
            continue
        slot = getattr(target, descriptor.name)
        if hasattr(slot, "extend"):
            slot.extend(value)
        elif hasattr(slot, "CopyFrom"):
            slot.CopyFrom(value)
        else:
            setattr(target, descriptor.name, value)


# -- neighbourhood -------------------------------------------------------------------------


def neighbourhood(
    model: onnx.ModelProto, focus: str, report: Report | None = None, hops: int = 2
) -> onnx.ModelProto:
    """The nodes `hops` steps up and down from `focus`, plus the shape chain that feeds it.

    `focus` is a node name, or a graph input (its consumers are the centre). The result is
    a valid model: cut edges become typed graph inputs and outputs, and large or external
    initializers become inputs too (their values are not needed to see the failure).
    """
    graph = model.graph
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    by_name = {node.name: i for i, node in enumerate(nodes) if node.name}
    if focus in by_name:
        centre = {by_name[focus]}
    elif focus in {value.name for value in graph.input}:
        centre = set(consumers.get(focus, []))
    else:
        raise ServeError(f"no node or input named {focus!r} in the graph")

    keep = set(centre)
    frontier = set(centre)
    for _ in range(hops):
        frontier = {producer[n] for i in frontier for n in nodes[i].input if n in producer}
        keep |= frontier
    frontier = set(centre)
    for _ in range(hops):
        frontier = {c for i in frontier for out in nodes[i].output for c in consumers.get(out, [])}
        keep |= frontier
    keep |= _shape_chain(nodes, producer, centre, _chain_roots(report, focus))
    return _extract(model, [nodes[i] for i in sorted(keep)], focus)


def _chain_roots(report: Report | None, focus: str) -> set[str] | None:
    """The tensors holding the frozen values of `focus`; None: every input of the centre."""
    if report is None:
        return None
    tensors = {f.tensor for f in report.findings if f.node == focus and f.tensor}
    return tensors or None


def _shape_chain(
    nodes: list[onnx.NodeProto],
    producer: Mapping[str, int],
    centre: set[int],
    roots: set[str] | None,
) -> set[int]:
    """Producers of the frozen tensor back to where the data's shape is read (Shape, Size)."""
    if roots is None:
        roots = {name for i in centre for name in nodes[i].input}
    chain: set[int] = set()
    queue = [producer[name] for name in roots if name in producer]
    while queue and len(chain) < _MAX_CHAIN:
        i = queue.pop(0)
        if i in chain or i in centre:
            continue
        chain.add(i)
        if nodes[i].op_type not in _SHAPE_SOURCES:
            queue.extend(producer[name] for name in nodes[i].input if name in producer)
    return chain


def _extract(model: onnx.ModelProto, kept: list[onnx.NodeProto], focus: str) -> onnx.ModelProto:
    graph = model.graph
    types = _value_types(model)
    initializers = {t.name: t for t in graph.initializer}
    produced = {out for node in kept for out in node.output if out}
    used = [name for node in kept for name in node.input if name]
    kept_ids = {id(node) for node in kept}
    used_outside = {
        name for node in graph.node if id(node) not in kept_ids for name in node.input
    } | {value.name for value in graph.output}

    sub = onnx.GraphProto(name=f"neighbourhood of {focus}")
    sub.node.extend(kept)
    for name in dict.fromkeys(used):
        if name in produced:
            continue
        tensor = initializers.get(name)
        if tensor is not None and _has_values(tensor):
            sub.initializer.append(tensor)
        else:
            sub.input.append(types.get(name) or _untyped(name, tensor))
    consumed_inside = set(used)
    for name in dict.fromkeys(out for node in kept for out in node.output if out):
        if name in used_outside or name not in consumed_inside:
            sub.output.append(types.get(name) or _untyped(name, None))

    result = onnx.ModelProto()
    _copy_fields(model, result, skip={"graph", "metadata_props"})
    result.graph.CopyFrom(sub)
    result.metadata_props.add(key=f"{PREFIX}focus", value=focus)
    return result


_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def _has_values(tensor: onnx.TensorProto) -> bool:
    """Inline values are here (not external, not dropped by `annotate`)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return False
    if 0 in tensor.dims:
        return True
    return any(len(getattr(tensor, name)) for name in _DATA_FIELDS)


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every tensor's type: declared, or inferred on the weightless model."""
    types: dict[str, onnx.ValueInfoProto] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a nicety: untyped edges still render
        inferred = model.graph
    for value in [*inferred.value_info, *model.graph.input, *model.graph.output]:
        if value.type.HasField("tensor_type"):
            info = onnx.ValueInfoProto()
            info.name = value.name
            info.type.CopyFrom(value.type)
            types[value.name] = info
    for tensor in model.graph.initializer:
        if tensor.name not in types:
            types[tensor.name] = onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)
            )
    return types


def _untyped(name: str, tensor: onnx.TensorProto | None) -> onnx.ValueInfoProto:
    elem = tensor.data_type if tensor is not None else onnx.TensorProto.FLOAT
    return onnx.helper.make_tensor_value_info(name, elem, None)


# -- serving -------------------------------------------------------------------------------


def _serve(file: Path, data: bytes, port: int) -> tuple[str, int]:
    # netron.serve configures the root logger when nothing has: a stray handler in the
    # user's process, and log lines this library must not print. A NullHandler prevents it.
    guard = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(guard)
    try:
        # bytearray: netron hands other objects (bytes included) to its model converters.
        host, bound = netron.serve(str(file), bytearray(data), address=(HOST, port), browse=False)
    except OSError as exc:
        raise ServeError(f"cannot serve on {HOST}:{port}: {exc.strerror or exc}") from None
    finally:
        root.removeHandler(guard)
    _pin_content((host, bound))
    return host, bound


def _pin_content(address: tuple[str, int]) -> None:
    """Give the server at `address` its own request handler class.

    netron 9.3 keeps the served model on its handler *class*, shared by every server in
    the process: a second `serve` would make the first one serve the second model too.
    """
    for thread in threading.enumerate():
        server = getattr(thread, "server", None)
        handler = getattr(server, "RequestHandlerClass", None)
        if getattr(thread, "address", None) == address and hasattr(handler, "content"):
            server.RequestHandlerClass = type(
                "PinnedHandler", (handler,), {"content": handler.content}
            )


def _browse(url: str) -> bool:
    with contextlib.suppress(Exception):  # no display, no browser: the URL is printed anyway
        return bool(webbrowser.open(url))
    return False


def _url(address: tuple[str, int]) -> str:
    return f"http://{address[0]}:{address[1]}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "node"


def _write(path: Path, data: bytes) -> Path:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path
