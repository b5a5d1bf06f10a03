"""`repair`: rewrite what check found, prove it, write it only when proved."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..untrusted import console
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    add_dummy,
    add_expect,
    add_inputs,
    add_max_memory,
    add_netron_flags,
    parse_dummy,
    serve_netron,
)


def add_repair(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair",
        prog="python -m diagnostics repair",
        usage="python -m diagnostics repair MODEL (-o OUTPUT | --dry-run) [options]",
        help="rewrite frozen shapes so the graph runs at every shape, and prove it",
        description=(
            "Repair what check finds with the smallest rewrite that can be proved (0/-1 or "
            "Shape->Gather->Concat in Reshape targets, sizes from Shape, aranges as Range, "
            "static inputs made symbolic), refuse the rest with the reason, verify in "
            "onnxruntime against the original, and write -o (never the input) only when "
            "all of it is proved."
        ),
    )
    parser.add_argument("model", help="ONNX file, or a directory holding model.onnx")
    parser.add_argument("-o", "--output",
                        help="where to write the repaired model (required, unless --dry-run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="show the plan and prove it; write nothing (-o is then not needed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--keep-failed",
        action="store_true",
        help="write -o even when the repair is not proved (to inspect it; do not ship it)",
    )
    add_dummy(parser)
    parser.add_argument(
        "--shapes", metavar="SHAPES", help="more BATCHxSEQUENCE shapes to verify at, e.g. 1x300"
    )
    add_expect(parser)
    add_inputs(parser, "verify")
    add_max_memory(parser)
    add_netron_flags(parser, focus="--focus")
    parser.set_defaults(handler=_repair)


def _repair(args: argparse.Namespace, out: Console) -> int:
    from ..analysis.signature import parse_expect
    from ..probe.run import parse_shapes
    from ..repair.options import RepairOptions
    from ..repair.plan import repair
    from ..report import render_repair, repair_to_json

    options = RepairOptions(
        output=args.output,
        dry_run=args.dry_run,
        dummy=parse_dummy(args.dummy) if args.dummy else None,
        shapes=parse_shapes(args.shapes) if args.shapes else None,
        keep_failed=args.keep_failed,
        expect=parse_expect(args.expect) if args.expect else None,
        inputs=args.inputs.split(",") if args.inputs else None,
        max_memory=args.max_memory,
    )
    report = repair(args.model, options=options)
    if args.json:
        print(repair_to_json(report))
    else:
        render_repair(out, report)
    if args.netron:  # the original, each flagged node annotated with what repair did to it
        from .. import check

        applied = {c.node: f"applied: {c.action}: {c.before} -> {c.after}" for c in report.changes}
        refused = {r.node: f"refused: {r.reason}" for r in report.refusals}
        original = check(args.model, dummy=parse_dummy(args.dummy) if args.dummy else None)
        shown_on = console(stderr=True) if args.json else out
        serve_netron(args, original, shown_on, repairs={**refused, **applied})
    return EXIT_OK if report.ok else EXIT_FAILED
