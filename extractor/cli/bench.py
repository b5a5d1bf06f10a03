"""`python -m extractor bench DIR`: time an output directory's models against PyTorch.

Arguments are checked before anything heavy is imported (a bad `--shapes` is a usage
error at once); `--peers` times the engines a user would pick instead, each with its
accuracy on real text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from diagnostics.usage import UsageError, print_usage_error

from .exits import EXIT_OK, EXIT_USAGE, MESSAGE_LIMIT, print_error

BENCH_USAGE = "python -m extractor bench DIRECTORY [options]"


def add_bench(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench",
        prog="python -m extractor bench",
        usage=BENCH_USAGE,
        help="time an output directory's models against PyTorch",
        description="Time an extractor output directory on CPU: PyTorch eager against "
        "model.onnx, model.optimized.onnx and model.int8.onnx (those present), same threads, "
        "medians after warm-up, speed-ups from the same run.",
    )
    parser.add_argument("directory", help="an output directory written by python -m extractor")
    parser.add_argument("--threads", type=int, default=2, help="threads for every model (2)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs at batch 1 (20)")
    parser.add_argument("--shapes", default="1x128,8x128,1x16",
                        help="BATCHxSEQUENCE shapes (default 1x128,8x128,1x16)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                        help="another ONNX model to time in the same run (e.g. Optimum's)")
    parser.add_argument("--peers", action="store_true",
                        help="also time the engines a user would pick instead (PyTorch bf16 "
                        "autocast, torch.ao int8, OpenVINO, CTranslate2, Optimum), one table "
                        "per accuracy tier, each with its accuracy on real text")
    parser.add_argument("--no-spin", dest="spinning", action="store_false",
                        help="idle threads of both runtimes sleep at once (OMP_WAIT_POLICY="
                        "PASSIVE, onnxruntime allow_spinning=0) instead of spinning a while, "
                        "their default: steadier beside busy processes, but PyTorch eager slows "
                        "more than onnxruntime, so speed-ups read 1.2-1.6x higher")
    parser.add_argument("--json", action="store_true", help="print the timings as JSON")
    parser.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace, out: Console, err: Console) -> int:
    from diagnostics.errors import ShapeSpecError

    try:
        shapes, extra = _checked_arguments(args)
    except (UsageError, ShapeSpecError) as exc:
        print_usage_error(err, exc, MESSAGE_LIMIT)
        return EXIT_USAGE
    directory = Path(args.directory)
    if not (directory / "config.json").is_file():
        print_error(err, f"{directory} is not an extractor output (no config.json)")
        return EXIT_USAGE

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if args.peers:
        return _peers(args, directory, shapes, out, err)
    return _speed(args, directory, shapes, extra, out, err)


def _checked_arguments(args: argparse.Namespace) -> tuple[tuple, dict[str, Path]]:
    """The shapes and the extra models; a UsageError (or ShapeSpecError) for bad ones."""
    from diagnostics.probe.run import parse_shapes

    shapes = tuple(parse_shapes(args.shapes))
    if any(isinstance(shape, dict) for shape in shapes):
        raise UsageError("python -m extractor bench: --shapes takes BATCHxSEQUENCE pairs",
                         BENCH_USAGE)
    extra = dict(_named_path(text) for text in args.extra)
    if args.threads < 1 or args.runs < 1:
        raise UsageError("python -m extractor bench: --threads and --runs must be at least 1",
                         BENCH_USAGE)
    return shapes, extra


def _named_path(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not name or not Path(path).is_file():
        raise UsageError(f"python -m extractor bench: --extra {text!r} is not NAME=existing.onnx",
                         BENCH_USAGE)
    return name, Path(path)


def _peers(args: argparse.Namespace, directory: Path, shapes: tuple, out: Console,
           err: Console) -> int:
    from ..bench.peers import compare_peers
    from ..errors import ExtractorError
    from ..report import render_peers, to_json

    if not any((directory / name).is_file() for name in ("vocab.txt", "tokenizer.json")):
        print_error(err, f"{directory} has no tokenizer: --peers measures accuracy on real text")
        return EXIT_USAGE
    try:
        with err.status("measuring every engine on real text, then timing them in turns..."):
            found = compare_peers(directory, args.threads, args.runs, shapes,
                                  spinning=args.spinning)
    except ExtractorError as exc:
        print_error(err, exc)
        return EXIT_USAGE
    if args.json:
        print(to_json([e.to_dict() for e in found]))
    else:
        render_peers(out, found, args.threads)
    return EXIT_OK


def _speed(args: argparse.Namespace, directory: Path, shapes: tuple, extra: dict[str, Path],
           out: Console, err: Console) -> int:
    from ..bench.speed import benchmark
    from ..errors import ExtractorError
    from ..report import render_speed, to_json

    try:
        with err.status("timing PyTorch and onnxruntime..."):
            timings = benchmark(directory, args.threads, args.runs, shapes, extra,
                                spinning=args.spinning)
    except ExtractorError as exc:
        print_error(err, exc)
        return EXIT_USAGE
    if args.json:
        print(to_json([t.__dict__ for t in timings]))
    else:
        render_speed(out, timings, args.threads)
    return EXIT_OK
