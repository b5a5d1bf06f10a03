"""`compare`: the ONNX model against its PyTorch module, module by module."""

from __future__ import annotations

import argparse

from rich.console import Console

from ..untrusted import console
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    add_inputs,
    add_max_memory,
    add_netron_flags,
    tolerance,
    until_ctrl_c,
)


def add_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        prog="python -m diagnostics compare",
        usage="python -m diagnostics compare MODEL --reference REF [options]",
        help="compare with the PyTorch module, module by module; name the first divergence",
        description=(
            "Run the ONNX model (its intermediate values exposed) and the PyTorch reference "
            "(a hook on every submodule) on the same inputs, align each module with the value "
            "leaving its scope, and name the first module that differs while its inputs agree, "
            "with its ONNX nodes, source line and a cause where one can be shown. Exit 0 when "
            "every aligned module agrees, 1 when one differs."
        ),
    )
    parser.add_argument("model", help="ONNX file, or a directory holding model.onnx")
    parser.add_argument("--reference", required=True, metavar="REF",
                        help="a Hugging Face model directory (config.json and weights; read "
                        "offline) or module:factory (factory() returns the torch.nn.Module)")
    parser.add_argument("--shapes", metavar="SHAPES",
                        help="BATCHxSEQUENCE text inputs to run on, e.g. 1x34,3x11 (default: "
                        "one shape the export dummy never had)")
    parser.add_argument("--atol", type=tolerance, default=1e-4, help="absolute tolerance "
                        "(default 1e-4)")
    parser.add_argument("--rtol", type=tolerance, default=1e-3, help="relative tolerance "
                        "(default 1e-3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_inputs(parser, "compare")
    add_max_memory(parser)
    add_netron_flags(parser, focus="--focus")
    parser.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace, out: Console) -> int:
    from ..compare.judge import compare
    from ..probe.run import parse_shapes
    from ..report import compare_to_json, render_compare

    report = compare(
        args.model,
        args.reference,
        inputs=args.inputs.split(",") if args.inputs else None,
        shapes=parse_shapes(args.shapes) if args.shapes else None,
        atol=args.atol,
        rtol=args.rtol,
        max_memory=args.max_memory,
    )
    if args.json:
        print(compare_to_json(report))
    else:
        render_compare(out, report)
    if args.netron:  # the model, each node of the first divergent module marked
        from ..report import render_compare_netron
        from ..view.netron import open_compare_in_netron

        view = open_compare_in_netron(report, focus=args.focus, port=args.port,
                                      browse=not args.no_browser)
        shown_on = console(stderr=True) if args.json else out
        until_ctrl_c(view, lambda: render_compare_netron(shown_on, view, report))
    return EXIT_OK if report.ok else EXIT_FAILED
