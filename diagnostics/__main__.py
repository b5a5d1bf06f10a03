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
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console

from .untrusted import plain
from .usage import Parser as _Parser
from .usage import UsageError as _UsageError
from .usage import command_parser, for_command, print_usage_error

if TYPE_CHECKING:
    from .findings import Report

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_CODES = {"clean": EXIT_OK, "findings": EXIT_FAILED, "incomplete": EXIT_INCOMPLETE}
_DEFAULT_PROBE = "default"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m diagnostics",
        usage="python -m diagnostics {check,show,repair,compare} MODEL [options]",
        description="Find, prove and locate shapes frozen at ONNX export.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                       metavar="{check,show,repair,compare}")
    _add_check(subparsers)
    _add_show(subparsers)
    _add_repair(subparsers)
    _add_compare(subparsers)
    return parser


def _add_check(subparsers: argparse._SubParsersAction) -> None:
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
        const=_DEFAULT_PROBE,
        metavar="SHAPES",
        help="run in onnxruntime at BATCHxSEQUENCE shapes, e.g. 1x8,4x128 "
        "(default: the export dummy, batch 1 and others, including a long one)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--dummy",
        metavar="batch=N,sequence=M",
        help="export dummy sizes by symbol (batch, sequence, height, ...), when the model does not "
        "record them (text default batch=2,sequence=8)",
    )
    _add_expect(parser)
    _add_inputs(parser, "probe")
    _add_max_memory(parser)
    _add_netron_flags(parser, focus="--focus")
    parser.set_defaults(handler=_check)


def _add_inputs(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--inputs",
        metavar="FILE.npz[,FILE.npz]",
        help=f"{purpose} on these inputs (numpy.savez, one array per graph input), for models "
        "whose inputs must agree in value (GLiNER's words and spans)",
    )


def _add_max_memory(parser: argparse.ArgumentParser) -> None:
    from .limits import ENV_VAR

    parser.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="the most memory one input may need (what an --inputs file or a probe input "
        f"declares), e.g. 8G or 512M; more is refused before it is read or built (default: "
        f"half the memory available, at most 64G; or {ENV_VAR})",
    )


def _add_expect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect",
        metavar="NAME[dim,...]",
        help="the input dims you expect, a name for each dynamic one, ';' between inputs, "
        "e.g. 'pixel_values[batch,3,height,width]': a static dim there, a missing input "
        "or another rank is a finding",
    )


def _add_netron_flags(parser: argparse.ArgumentParser, focus: str | None) -> None:
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
        "--port", type=_port, default=0, help="port for Netron (default 0: any free one)"
    )


def _add_show(subparsers: argparse._SubParsersAction) -> None:
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
    parser.add_argument(
        "--dummy",
        metavar="batch=N,sequence=M",
        help="export dummy sizes by symbol (batch, sequence, height, ...), when the model does not "
        "record them (text default batch=2,sequence=8)",
    )
    _add_netron_flags(parser, focus=None)
    parser.set_defaults(handler=_show, netron=True, json=False)


def main(argv: list[str] | None = None) -> int:
    err = Console(stderr=True)
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
        return args.handler(args, Console())
    except DiagnosticsError as exc:  # its text names the file's values: printed, never read
        err.print(plain(f"error: {exc}", limit=1000), markup=False, highlight=False,
                  soft_wrap=True)
        return EXIT_USAGE


def _check(args: argparse.Namespace, out: Console) -> int:
    from . import check
    from .analysis.signature import parse_expect
    from .probe.run import parse_shapes
    from .report import render_check, to_json

    shapes = None
    if args.probe and args.probe != _DEFAULT_PROBE:
        shapes = parse_shapes(args.probe)
    report = check(
        args.model,
        probe=args.probe is not None or bool(args.inputs),
        probe_shapes=shapes,
        dummy=_parse_dummy(args.dummy) if args.dummy else None,
        expect=parse_expect(args.expect) if args.expect else None,
        probe_inputs=args.inputs.split(",") if args.inputs else None,
        max_memory=args.max_memory,
    )
    if args.json:
        print(to_json(report))
    else:
        render_check(out, report)
    if args.netron:
        _serve_netron(args, report, Console(stderr=True) if args.json else out)
    return EXIT_CODES[report.verdict]


def _show(args: argparse.Namespace, out: Console) -> int:
    from . import check

    report = check(args.model, dummy=_parse_dummy(args.dummy) if args.dummy else None)
    _serve_netron(args, report, out)
    return EXIT_OK


def _serve_netron(
    args: argparse.Namespace,
    report: Report,
    out: Console,
    repairs: Mapping[str, str] | None = None,
) -> None:
    """Serve until Ctrl+C, then stop the servers (the ports are closed on return)."""
    from .report import render_netron
    from .view.netron import open_in_netron

    view = open_in_netron(
        report, focus=args.focus, port=args.port, browse=not args.no_browser, repairs=repairs
    )
    _until_ctrl_c(view, lambda: render_netron(out, view, report))


def _until_ctrl_c(view, render) -> None:
    """Render, then serve until Ctrl+C; a Ctrl+C that lands while rendering (the line
    saying to press it is already out) stops the servers too, never exit 130."""
    try:
        render()
        view.wait()
    except KeyboardInterrupt:
        view.stop()


def _add_repair(subparsers: argparse._SubParsersAction) -> None:
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
    parser.add_argument(
        "--dummy",
        metavar="batch=N,sequence=M",
        help="export dummy sizes by symbol (batch, sequence, height, ...), when the model does not "
        "record them (text default batch=2,sequence=8)",
    )
    parser.add_argument(
        "--shapes", metavar="SHAPES", help="more BATCHxSEQUENCE shapes to verify at, e.g. 1x300"
    )
    _add_expect(parser)
    _add_inputs(parser, "verify")
    _add_max_memory(parser)
    _add_netron_flags(parser, focus="--focus")
    parser.set_defaults(handler=_repair)


def _repair(args: argparse.Namespace, out: Console) -> int:
    from .analysis.signature import parse_expect
    from .probe.run import parse_shapes
    from .repair.options import RepairOptions
    from .repair.plan import repair
    from .report import render_repair, repair_to_json

    options = RepairOptions(
        output=args.output,
        dry_run=args.dry_run,
        dummy=_parse_dummy(args.dummy) if args.dummy else None,
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
        from . import check

        applied = {c.node: f"applied: {c.action}: {c.before} -> {c.after}" for c in report.changes}
        refused = {r.node: f"refused: {r.reason}" for r in report.refusals}
        original = check(args.model, dummy=_parse_dummy(args.dummy) if args.dummy else None)
        console = Console(stderr=True) if args.json else out
        _serve_netron(args, original, console, repairs={**refused, **applied})
    return EXIT_OK if report.ok else EXIT_FAILED


def _add_compare(subparsers: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--atol", type=_tolerance, default=1e-4, help="absolute tolerance "
                        "(default 1e-4)")
    parser.add_argument("--rtol", type=_tolerance, default=1e-3, help="relative tolerance "
                        "(default 1e-3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_inputs(parser, "compare")
    _add_max_memory(parser)
    _add_netron_flags(parser, focus="--focus")
    parser.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace, out: Console) -> int:
    from .compare.judge import compare
    from .probe.run import parse_shapes
    from .report import compare_to_json, render_compare

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
        from .report import render_compare_netron
        from .view.netron import open_compare_in_netron

        view = open_compare_in_netron(report, focus=args.focus, port=args.port,
                                      browse=not args.no_browser)
        console = Console(stderr=True) if args.json else out
        _until_ctrl_c(view, lambda: render_compare_netron(console, view, report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a tolerance: {text!r} (a number, 0 or more)")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0 to 65535)")
    return int(text)


def _parse_dummy(text: str) -> dict[str, int]:
    from .errors import ShapeSpecError

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


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outputs are staged: a stopped run leaves nothing half-written
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)
