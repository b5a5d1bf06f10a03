"""Serve a checked (or compared) model in Netron: the annotated copy, and the neighbourhood
of one node.

Netron cannot be deep-linked to a node, so the node around which the failure sits is also
served alone (both models come from `annotate`). The user's file is never written; each
server gets its own port, and `NetronView.stop()` closes them all.

Each copy is serialized once (`ir.to_proto`), and those bytes are both served from memory
and written through `atomic` (the one atomic writer). Not `ir.save`: it writes to a path,
so the bytes Netron serves would be serialized twice or read back, and there is no
external data to write: the copies keep the model's references to its weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import netron
import onnx
import onnx_ir as ir

from .. import atomic
from ..compare.results import CompareReport
from ..errors import ServeError
from ..findings import Report
from ..loading import LoadedModel, load_model
from .annotate import annotate, divergence_marks, mark, neighbourhood

HOST = "127.0.0.1"


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
    _scratch: Path | None = field(default=None, repr=False)  # our temp folder, gone at stop()

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
        if self._scratch is not None:  # the copies were only for serving
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

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
        directory: where to write the two small served files, kept after `stop()`
            (default: a new temp folder, removed by `stop()`).
        repairs: node -> what repair did to it ("applied: ...", "refused: ..."), shown as
            `subgraft.repair` instead of the suggested repair.

    Raises:
        ServeError: `port` is taken, or `focus` names no node or input of the graph.
    """
    if model is None and not Path(report.model).exists():
        raise ServeError(f"{report.model!r} is not a file: pass the model checked in memory")
    loaded = load_model(report.model if model is None else model)
    annotated = annotate(loaded.model, report, repairs)
    focus = focus if focus is not None else default_focus(report)
    near = neighbourhood(annotated, focus, report, hops) if focus else None
    flagged = tuple(dict.fromkeys(f.node for f in report.findings))
    return _serve_views(loaded, annotated, near, focus, flagged, port, browse, directory)


def open_compare_in_netron(
    report: CompareReport,
    model: str | os.PathLike[str] | onnx.ModelProto | None = None,
    *,
    focus: str | None = None,
    port: int = 0,
    browse: bool = True,
    hops: int = 2,
    directory: str | os.PathLike[str] | None = None,
) -> NetronView:
    """Serve the compared model with each ONNX node of the first divergent module marked
    (`subgraft.divergence`, `.error`, `.cause`, `.source`), and the neighbourhood of `focus`
    (default: the node the cause names, else the module's first node). Arguments as
    `open_in_netron`'s; `report` is what `compare` returned."""
    if model is None and not Path(report.model).exists():
        raise ServeError(f"{report.model!r} is not a file: pass the model compared in memory")
    loaded = load_model(report.model if model is None else model)
    first = report.first_divergence
    marks = divergence_marks(first) if first else []
    summary = (f"first divergent module {first.module or '<root>'}: {len(marks)} node(s) "
               "marked; find them by searching for 'subgraft'" if first
               else "no divergent module")
    annotated = mark(loaded.model, marks, "divergence", summary)
    if focus is None and first and first.onnx_nodes:
        named = [n for n in first.onnx_nodes if n in set((first.cause or "").split())]
        focus = (named or list(first.onnx_nodes))[0]
    near = neighbourhood(annotated, focus, None, hops) if focus else None
    flagged = first.onnx_nodes if first else ()
    return _serve_views(loaded, annotated, near, focus, flagged, port, browse, directory)


def _serve_views(loaded: LoadedModel, annotated: ir.Model, near: ir.Model | None,
                 focus: str | None, flagged: tuple[str, ...], port: int, browse: bool,
                 directory: str | os.PathLike[str] | None) -> NetronView:
    """Write and serve the annotated copy (and the neighbourhood); stop all on failure."""
    data = _serialize(annotated)
    del annotated  # only the bytes are needed from here on
    scratch = None if directory else Path(tempfile.mkdtemp(prefix="subgraft-netron-"))
    out = Path(directory) if directory else scratch
    out.mkdir(parents=True, exist_ok=True)
    stem = loaded.path.stem if loaded.path else "model"
    # Served as if it sat next to the model, so Netron can fetch external weights on demand.
    home = loaded.path.parent if loaded.path else out

    view_addresses: list[tuple[str, int]] = []
    try:
        annotated_path = _write(out / f"{stem}.annotated.onnx", data)
        address = _serve(home / annotated_path.name, data, port)
        view_addresses.append(address)
        view = NetronView(
            url=_url(address),
            address=address,
            annotated=annotated_path,
            flagged=flagged,
            served_bytes=len(data),
            _addresses=view_addresses,
            _scratch=scratch,
        )
        if near is not None:
            near_data = _serialize(near)
            near_path = _write(out / f"{stem}.{_slug(focus)}.neighbourhood.onnx", near_data)
            near_address = _serve(home / near_path.name, near_data, 0)
            view_addresses.append(near_address)
            view.focus, view.focus_url, view.focus_address = focus, _url(near_address), near_address
            view.neighbourhood, view.neighbourhood_nodes = near_path, len(near.graph)
    except BaseException:
        for address in view_addresses:
            netron.stop(address)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if browse:
        view.browsed = _browse(view.focus_url or view.url)
    return view


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


def _serialize(model: ir.Model) -> bytes:
    """The bytes both served and written."""
    return ir.to_proto(model).SerializeToString()


def _write(path: Path, data: bytes) -> Path:
    return atomic.write_bytes(path, data)
