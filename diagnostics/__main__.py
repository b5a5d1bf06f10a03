"""python -m diagnostics check MODEL.onnx [--probe [SHAPES]] [--json] [--dummy batch=N,sequence=M]
                           [--expect NAME[dim,...]] [--netron [--focus NODE] [--no-browser]]
python -m diagnostics repair MODEL.onnx -o OUT.onnx [--dry-run] [--keep-failed] [--json]
                            [--netron ...]
python -m diagnostics show MODEL.onnx [--node NAME] [--no-browser] [--port N]
python -m diagnostics compare MODEL.onnx --reference REF [--inputs F.npz | --shapes 1x34,3x11]
                             [--atol A] [--rtol R] [--json]

Thin: parse, call the library, render, return an exit code.
"""

from __future__ import annotations

import argparse
import sys

from .cli.check import add_check, add_show
from .cli.common import EXIT_CODES, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from .cli.compare import add_compare
from .cli.repair import add_repair
from .untrusted import console, plain
from .usage import Parser as _Parser
from .usage import UsageError as _UsageError
from .usage import command_parser, for_command, print_usage_error

__all__ = ["EXIT_CODES", "EXIT_FAILED", "EXIT_INCOMPLETE", "EXIT_OK", "EXIT_USAGE", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m diagnostics",
        usage="python -m diagnostics {check,show,repair,compare} MODEL [options]",
        description="Find, prove and locate shapes frozen at ONNX export.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                       metavar="{check,show,repair,compare}")
    add_check(subparsers)
    add_show(subparsers)
    add_repair(subparsers)
    add_compare(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    err = console(stderr=True)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "repair" and not (args.output or args.dry_run):
            command_parser(parser, "repair").error(
                "give -o OUTPUT for the repaired model, or --dry-run to only show the plan")
    except _UsageError as exc:
        words = list(sys.argv[1:] if argv is None else argv)
        print_usage_error(err, for_command(exc, parser, words), 1000)
        return EXIT_USAGE

    from .errors import DiagnosticsError

    try:
        return args.handler(args, console())
    except DiagnosticsError as exc:  # its text names the file's values: printed, never read
        err.print(plain(f"error: {exc}", limit=1000), markup=False, highlight=False,
                  soft_wrap=True)
        return EXIT_USAGE


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outputs are staged: a stopped run leaves nothing half-written
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)
