"""`check` (find, and with --probe prove, frozen shapes) and `show` (serve them in Netron)."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..untrusted import console
from .common import (
    DEFAULT_PROBE,
    EXIT_CODES,
    EXIT_OK,
    add_dummy,
    add_expect,
    add_inputs,
    add_max_memory,
    add_netron_flags,
    parse_dummy,
    serve_netron,
)


def add_check(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        prog="python -m diagnostics check",
        usage="python -m diagnostics check MODEL [--probe [SHAPES]] [options]",
        help="find shapes frozen from the export dummy",
        description=(
            "Find every node whose shape-like input is a literal where the data is dynamic "
            "(Reshape, Expand, Tile, ConstantOfShape, Range, Slice, Resize, folded constants), "
            "and static text inputs. Reads no weights unless --probe."
        ),
    )
    parser.add_argument("model", help="ONNX file, or a directory holding model.onnx")
    parser.add_argument(
        "--probe",
        nargs="?",
        const=DEFAULT_PROBE,
        metavar="SHAPES",
        help="run in onnxruntime at BATCHxSEQUENCE shapes, e.g. 1x8,4x128 "
        "(default: the export dummy, batch 1 and others, including a long one)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_dummy(parser)
    add_expect(parser)
    add_inputs(parser, "probe")
    add_max_memory(parser)
    add_netron_flags(parser, focus="--focus")
    parser.set_defaults(handler=_check)


def _check(args: argparse.Namespace, out: Console) -> int:
    from .. import check
    from ..analysis.signature import parse_expect
    from ..probe.run import parse_shapes
    from ..report import render_check, to_json

    shapes = None
    if args.probe and args.probe != DEFAULT_PROBE:
        shapes = parse_shapes(args.probe)
    report = check(
        args.model,
        probe=args.probe is not None or bool(args.inputs),
        probe_shapes=shapes,
        dummy=parse_dummy(args.dummy) if args.dummy else None,
        expect=parse_expect(args.expect) if args.expect else None,
        probe_inputs=args.inputs.split(",") if args.inputs else None,
        max_memory=args.max_memory,
    )
    if args.json:
        print(to_json(report))
    else:
        render_check(out, report)
    if args.netron:
        serve_netron(args, report, console(stderr=True) if args.json else out)
    return EXIT_CODES[report.verdict]


def add_show(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show",
        prog="python -m diagnostics show",
        usage="python -m diagnostics show MODEL [--node NAME] [options]",
        help="open the model in Netron, findings marked",
        description=(
            "Check the model (statically), then serve an annotated copy in Netron on 127.0.0.1 "
            "and the neighbourhood of one node, until Ctrl+C. The model file is never modified."
        ),
    )
    parser.add_argument("model", help="ONNX file, or a directory holding model.onnx")
    parser.add_argument(
        "--node",
        "--focus",
        dest="focus",
        metavar="NAME",
        help="serve this node's neighbourhood too (default: the first finding)",
    )
    add_dummy(parser)
    add_netron_flags(parser, focus=None)
    parser.set_defaults(handler=_show, netron=True, json=False)


def _show(args: argparse.Namespace, out: Console) -> int:
    from .. import check

    report = check(args.model, dummy=parse_dummy(args.dummy) if args.dummy else None)
    serve_netron(args, report, out)
    return EXIT_OK
