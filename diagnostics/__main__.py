"""python -m diagnostics check MODEL.onnx [--probe [SHAPES]] [--json] [--dummy batch=N,sequence=M]

Thin: parse, call the library, render, return an exit code. `repair` and `show` come later.
"""

from __future__ import annotations

import argparse
import re
import sys

from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_DEFAULT_PROBE = "default"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would sys.exit(2); main returns 2
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m diagnostics",
        description="Find, prove and locate shapes frozen at ONNX export.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_check(subparsers)
    return parser


def _add_check(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
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
        const=_DEFAULT_PROBE,
        metavar="SHAPES",
        help="run in onnxruntime at BATCHxSEQUENCE shapes, e.g. 1x8,4x128 "
        "(default: the export dummy, batch 1 and others, including a long one)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--dummy",
        metavar="batch=N,sequence=M",
        help="export dummy sizes, when the model does not record them (default batch=2,sequence=8)",
    )
    parser.set_defaults(handler=_check)


def main(argv: list[str] | None = None) -> int:
    err = Console(stderr=True)
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        err.print(str(exc), markup=False, highlight=False)
        return EXIT_USAGE

    from .errors import DiagnosticsError

    try:
        return args.handler(args, Console())
    except DiagnosticsError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE


def _check(args: argparse.Namespace, out: Console) -> int:
    from . import check
    from .probe import parse_shapes
    from .report import render_check, to_json

    shapes = None
    if args.probe and args.probe != _DEFAULT_PROBE:
        shapes = parse_shapes(args.probe)
    report = check(
        args.model,
        probe=args.probe is not None,
        probe_shapes=shapes,
        dummy=_parse_dummy(args.dummy) if args.dummy else None,
    )
    if args.json:
        print(to_json(report))
    else:
        render_check(out, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _parse_dummy(text: str) -> dict[str, int]:
    from .errors import ShapeSpecError

    sizes = {}
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(batch|sequence)=(\d+)", part)
        if not match:
            raise ShapeSpecError(f"bad --dummy {part!r}: write batch=N,sequence=M")
        sizes[match[1]] = int(match[2])
    return sizes


if __name__ == "__main__":
    sys.exit(main())
