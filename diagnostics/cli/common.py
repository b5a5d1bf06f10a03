"""What the diagnostics subcommands share: exit codes, common flags, Netron serving."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from ..findings import Report

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_CODES = {"clean": EXIT_OK, "findings": EXIT_FAILED, "incomplete": EXIT_INCOMPLETE}
DEFAULT_PROBE = "default"


def add_dummy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dummy",
        metavar="batch=N,sequence=M",
        help="export dummy sizes by symbol (batch, sequence, height, ...), when the model does not "
        "record them (text default batch=2,sequence=8)",
    )


def add_inputs(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--inputs",
        metavar="FILE.npz[,FILE.npz]",
        help=f"{purpose} on these inputs (numpy.savez, one array per graph input), for models "
        "whose inputs must agree in value (GLiNER's words and spans)",
    )


def add_max_memory(parser: argparse.ArgumentParser) -> None:
    from ..limits import ENV_VAR

    parser.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="the most memory one input may need (what an --inputs file or a probe input "
        f"declares), e.g. 8G or 512M; more is refused before it is read or built (default: "
        f"half the memory available, at most 64G; or {ENV_VAR})",
    )


def add_expect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect",
        metavar="NAME[dim,...]",
        help="the input dims you expect, a name for each dynamic one, ';' between inputs, "
        "e.g. 'pixel_values[batch,3,height,width]': a static dim there, a missing input "
        "or another rank is a finding",
    )


def add_netron_flags(parser: argparse.ArgumentParser, focus: str | None) -> None:
    """--netron (unless `focus` is None: show always serves), --no-browser, --port, --focus."""
    if focus:
        parser.add_argument(
            "--netron",
            action="store_true",
            help="then serve an annotated copy in Netron on 127.0.0.1 until Ctrl+C",
        )
        parser.add_argument(
            focus,
            dest="focus",
            metavar="NODE",
            help="with --netron: also serve this node's neighbourhood (default: the first finding)",
        )
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open a browser; only print the URL"
    )
    parser.add_argument(
        "--port", type=port, default=0, help="port for Netron (default 0: any free one)"
    )


def serve_netron(
    args: argparse.Namespace,
    report: Report,
    out: Console,
    repairs: Mapping[str, str] | None = None,
) -> None:
    """Serve until Ctrl+C, then stop the servers (the ports are closed on return)."""
    from ..report import render_netron
    from ..view.netron import open_in_netron

    view = open_in_netron(
        report, focus=args.focus, port=args.port, browse=not args.no_browser, repairs=repairs
    )
    until_ctrl_c(view, lambda: render_netron(out, view, report))


def until_ctrl_c(view, render) -> None:
    """Render, then serve until Ctrl+C; a Ctrl+C that lands while rendering (the line
    saying to press it is already out) stops the servers too, never exit 130."""
    try:
        render()
        view.wait()
    except KeyboardInterrupt:
        view.stop()


def tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a tolerance: {text!r} (a number, 0 or more)")
    return value


def port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0 to 65535)")
    return int(text)


def parse_dummy(text: str) -> dict[str, int]:
    from ..errors import ShapeSpecError

    sizes = {}
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"([A-Za-z_][\w.]{0,63})=(\d{1,9})", part)
        if not match:
            raise ShapeSpecError(f"bad --dummy {part!r}: write NAME=N,... e.g. batch=2,sequence=8 "
                                 "or batch=2,height=224")
        if int(match[2]) < 1:
            raise ShapeSpecError(f"bad --dummy {part!r}: sizes are at least 1")
        sizes[match[1]] = int(match[2])
    return sizes
