"""python -m extractor [extract] CHECKPOINT [--prefix bert.]: strip, rebuild, export, verify.

python -m extractor bench DIR: time an output directory's models against PyTorch.

python -m extractor graft-check DIR --parent MODULE:FACTORY --submodule bert --batches FILE:
graft the output back into its model and compare the model's outputs both ways.

Real subcommands; `extract` is the default, so `python -m extractor CKPT` works
(a checkpoint named like a command: `python -m extractor extract bench`). Heavy
modules are imported by the command that needs them: help and usage errors are instant.
"""

from __future__ import annotations

import os

# Offline always: transformers and huggingface_hub read this when they are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from rich.console import Console  # noqa: E402

from diagnostics.usage import Parser as _Parser  # noqa: E402
from diagnostics.usage import UsageError as _UsageError  # noqa: E402
from diagnostics.usage import for_command, print_usage_error  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


COMMANDS = ("extract", "bench", "graft-check")
_BENCH_USAGE = "python -m extractor bench DIRECTORY [options]"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m extractor",
        usage="python -m extractor [extract] CHECKPOINT [options] | bench DIR | graft-check DIR",
        description="Take a transformer encoder out of a composite checkpoint, load it into a "
        "fresh model of its own type (any encoder transformers builds) and export verified dynamic "
        "ONNX. Never downloads, never guesses a config. `extract` is the default command: "
        "python -m extractor CHECKPOINT --prefix bert.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{extract,bench,graft-check}",
                                     parser_class=_Parser)
    _add_extract(commands)
    _add_bench(commands)
    _add_graft_check(commands)
    return parser


def _add_extract(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "extract",
        prog="python -m extractor extract",
        usage="python -m extractor [extract] CHECKPOINT [--prefix PREFIX] [options]",
        help="(the default) take the encoder out, export ONNX and verify it",
        description="Take a transformer encoder out of a composite checkpoint, load it into a "
        "fresh model of its own type (any encoder transformers builds) and export verified dynamic "
        "ONNX. Never downloads, never guesses a config.",
    )
    parser.add_argument(
        "checkpoint",
        help="composite checkpoint (.bin/.pt/.pth/.ckpt/.mdl, .safetensors) or a model directory",
    )
    parser.add_argument(
        "--prefix",
        help="key prefix of the encoder, e.g. 'bert.' (default: the single encoder found)",
    )
    parser.add_argument(
        "--list", action="store_true", help="show the prefix tree with tensor counts and exit"
    )
    parser.add_argument(
        "-o", "--output", help="output directory (default: <checkpoint dir>/<stem>-<prefix>-onnx)"
    )
    parser.add_argument("--config", help="config.json describing the encoder")
    parser.add_argument(
        "--model",
        help="local model directory, or a Hub name in the local "
        "Hugging Face cache, whose config describes the encoder",
    )
    parser.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="local directory whose tokenizer files (tokenizer.json, vocab.txt, ...) are copied "
        "into the output (default: those beside the config, if any)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE[,NAME=VALUE]",
        help="set config values (e.g. num_attention_heads=12); with no config in the "
        "checkpoint's files, what shapes cannot tell (the heads) must be given this way",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle with arbitrary code (only for trusted files); without it, classes "
        "torch does not allow are read as data, none of their code run",
    )
    parser.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx exporter (default: dynamo, the torch.export-based one)",
    )
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument(
        "--hidden-states", action="store_true", help="also output every layer's hidden states"
    )
    parser.add_argument(
        "--no-pooler",
        action="store_true",
        help="leave the pooler out (outputs last_hidden_state only; a little faster)",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="parity tolerance (1e-4)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (1e-4)")
    parser.add_argument(
        "--force", action="store_true", help="replace an output directory not written by this tool"
    )
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="also write model.optimized.onnx with onnxruntime's transformer fusions "
        "(attention, skip-layer-norm, bias-GELU, embed-layer-norm), parity-checked",
    )
    parser.add_argument(
        "--quantize",
        choices=("int8",),
        help="also write model.int8.onnx (dynamic int8), gated on cosine similarity to fp32 "
        "on real text",
    )
    parser.add_argument(
        "--precision",
        choices=("bf16",),
        help="also write openvino/model.xml, run in bf16 by OpenVINO (optional extra; CPUs "
        "with bf16 instructions), gated on cosine similarity to fp32 on real text",
    )
    parser.add_argument(
        "--runtime",
        choices=("onnxruntime", "openvino"),
        default="onnxruntime",
        help="openvino: also write openvino/model.xml (OpenVINO IR), checked in f32 on real "
        "text (optional extra: pip install \"subgraft[openvino]\")",
    )
    parser.add_argument(
        "--keep-failed",
        action="store_true",
        help="when verification fails, keep the outputs in <output>.failed to inspect",
    )
    parser.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="memory the run may take, e.g. 8G or 512M: a config, zip or header declaring "
        "more is refused before anything is built (default: half the available memory, at "
        "most 64G; or $SUBGRAFT_MAX_MEMORY)",  # diagnostics.limits reads the variable
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.set_defaults(handler=_extract_command)


def _size(text: str) -> int:
    from diagnostics.limits import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_bench(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench",
        prog="python -m extractor bench",
        usage=_BENCH_USAGE,
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


def main(argv: list[str] | None = None) -> int:
    out = Console()
    err = Console(stderr=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in (*COMMANDS, "-h", "--help"):  # extract is the default command
        argv.insert(0, "extract")
    parser = _parser()
    try:
        if not argv:
            raise _UsageError("python -m extractor: give a checkpoint (or a command: "
                              f"{', '.join(COMMANDS[1:])})", parser.format_usage().strip())
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print_usage_error(err, for_command(exc, parser, argv), _MESSAGE_LIMIT)
        return EXIT_USAGE
    return args.handler(args, out, err)


def _extract_command(args: argparse.Namespace, out: Console, err: Console) -> int:
    from transformers.utils import logging as hf_logging

    from .errors import ExtractorError, PrefixError, WeightMismatchError

    hf_logging.disable_progress_bar()  # the rich status line is the progress display

    try:
        if args.list:
            return _list(args, out)
        args.overrides = _overrides(args.set)
        return _extract(args, out, err)
    except WeightMismatchError as exc:
        from .report import render_keys

        render_keys(err, exc.keys)
        _error(err, exc)
    except PrefixError as exc:
        if "several encoders" in str(exc) or "no transformer encoder" in str(exc):
            _list(args, out)  # what there is, to choose from: on stdout, the error alone on stderr
        _error(err, exc)
    except ExtractorError as exc:
        _error(err, exc)
    return EXIT_USAGE


def _bench(args: argparse.Namespace, out: Console, err: Console) -> int:
    from diagnostics.errors import ShapeSpecError
    from diagnostics.probe.run import parse_shapes

    try:
        shapes = tuple(parse_shapes(args.shapes))
        if any(isinstance(shape, dict) for shape in shapes):
            raise _UsageError("python -m extractor bench: --shapes takes BATCHxSEQUENCE pairs",
                              _BENCH_USAGE)
        extra = dict(_named_path(text) for text in args.extra)
        if args.threads < 1 or args.runs < 1:
            raise _UsageError("python -m extractor bench: --threads and --runs must be at least 1",
                              _BENCH_USAGE)
    except (_UsageError, ShapeSpecError) as exc:
        print_usage_error(err, exc, _MESSAGE_LIMIT)
        return EXIT_USAGE
    directory = Path(args.directory)
    if not (directory / "config.json").is_file():
        _error(err, f"{directory} is not an extractor output (no config.json)")
        return EXIT_USAGE

    from transformers.utils import logging as hf_logging

    from .bench.speed import benchmark
    from .errors import ExtractorError
    from .report import render_speed, to_json

    hf_logging.disable_progress_bar()

    if args.peers:
        from .bench.peers import compare_peers
        from .report import render_peers

        if not any((directory / name).is_file() for name in ("vocab.txt", "tokenizer.json")):
            _error(err, f"{directory} has no tokenizer: --peers measures accuracy on real text")
            return EXIT_USAGE
        try:
            with err.status("measuring every engine on real text, then timing them in turns..."):
                found = compare_peers(directory, args.threads, args.runs, shapes,
                                      spinning=args.spinning)
        except ExtractorError as exc:
            _error(err, exc)
            return EXIT_USAGE
        if args.json:
            print(to_json([e.to_dict() for e in found]))
        else:
            render_peers(out, found, args.threads)
        return EXIT_OK
    try:
        with err.status("timing PyTorch and onnxruntime..."):
            timings = benchmark(directory, args.threads, args.runs, shapes, extra,
                                spinning=args.spinning)
    except ExtractorError as exc:
        _error(err, exc)
        return EXIT_USAGE
    if args.json:
        print(to_json([t.__dict__ for t in timings]))
    else:
        render_speed(out, timings, args.threads)
    return EXIT_OK


def _add_graft_check(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "graft-check",
        prog="python -m extractor graft-check",
        usage="python -m extractor graft-check DIRECTORY --parent MODULE:FACTORY --submodule "
        "NAME --batches FILE [options]",
        help="graft an output back into its model and compare the model's outputs",
        description="Put an extractor output back into the model it came from, in onnxruntime, "
        "and compare every output of the model's own forward with and without it on your "
        "batches. Exit 0 when all agree within tolerance, 1 when not.",
    )
    parser.add_argument("directory", help="an output directory written by python -m extractor")
    parser.add_argument("--parent", required=True, metavar="MODULE:FACTORY",
                        help="an importable function returning the model with its weights "
                        "loaded (the current directory is importable)")
    parser.add_argument("--submodule", required=True,
                        help="the encoder's attribute path in the model, e.g. bert or "
                        "model.encoder")
    parser.add_argument("--batches", required=True,
                        help="torch.save'd list of batches: each a dict of keyword arguments, a "
                        "tuple of positional ones, or one tensor (loaded weights-only)")
    parser.add_argument("--file", default="model.onnx", choices=("model.onnx",
                        "model.optimized.onnx", "model.int8.onnx"),
                        help="which ONNX file to graft (model.onnx)")
    parser.add_argument("--method", default="forward",
                        help="the model's method to call on each batch (forward)")
    parser.add_argument("--atol", type=float, default=1e-4, help="tolerance (1e-4)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (1e-4)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(handler=_graft_check)


def _graft_check(args: argparse.Namespace, out: Console, err: Console) -> int:
    import torch

    from .errors import ExtractorError
    from .graft import OnnxEncoder, load_factory, verify_graft
    from .report import render_graft, to_json

    try:
        encoder = OnnxEncoder(args.directory, args.file)
        batches = _load_batches(Path(args.batches))
        parent = load_factory(args.parent)()
        if not isinstance(parent, torch.nn.Module):
            raise ExtractorError(f"--parent {args.parent} returned a {type(parent).__name__}, "
                                 "not a torch.nn.Module")
        with err.status("running the model with its encoder and with the graft..."):
            report = verify_graft(parent, args.submodule, encoder, batches, args.file,
                                  args.atol, args.rtol, args.method)
    except ExtractorError as exc:
        _error(err, exc)
        return EXIT_USAGE
    if args.json:
        print(to_json(report.to_dict()))
    else:
        render_graft(out, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _load_batches(path: Path) -> list:
    import pickle

    import torch

    from .errors import ExtractorError

    try:
        batches = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExtractorError(f"--batches {path} cannot be read: {first}") from None
    if isinstance(batches, (dict, torch.Tensor)) or not isinstance(batches, (list, tuple)):
        batches = [batches]
    return list(batches)


def _named_path(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not name or not Path(path).is_file():
        raise _UsageError(f"python -m extractor bench: --extra {text!r} is not NAME=existing.onnx",
                          _BENCH_USAGE)
    return name, Path(path)


def _overrides(items: list[str]) -> dict[str, object]:
    """`--set a=1,b=gelu` -> {"a": 1, "b": "gelu"}; values are JSON where they parse."""
    import json

    from diagnostics.limits import json_depth_problem

    from .errors import ExtractorError

    found: dict[str, object] = {}
    for item in (part for text in items for part in text.split(",") if part.strip()):
        name, equals, value = item.partition("=")
        if not equals or not name.strip().isidentifier():
            raise ExtractorError(f"--set {item[:60]!r} is not NAME=VALUE")
        problem = json_depth_problem(value)
        if problem:
            raise ExtractorError(f"--set {name.strip()}: {problem}")
        try:
            found[name.strip()] = json.loads(value)
        except ValueError:  # not JSON: the text itself (gelu), or a number too long to read
            found[name.strip()] = value.strip()
    return found


def _error(err: Console, exc: Exception | str) -> None:
    """One line: the message names keys and paths from files, so control characters in
    them are shown as escapes (a newline must not make it two lines)."""
    from diagnostics.untrusted import plain

    err.print(f"error: {plain(exc, _MESSAGE_LIMIT)}", markup=False, highlight=False,
              soft_wrap=True)


_MESSAGE_LIMIT = 2000


def _list(args: argparse.Namespace, console: Console) -> int:
    from .report import render_prefixes, to_json
    from .resolve.opening import open_checkpoint
    from .resolve.prefixes import prefix_summary

    ckpt = open_checkpoint(args.checkpoint, trust=args.trust_checkpoint,
                           max_memory=args.max_memory)
    rows = prefix_summary(ckpt.state_dict)
    if args.json:
        print(to_json({"location": ckpt.location, "prefixes": [r.__dict__ for r in rows]}))
    else:
        render_prefixes(console, rows, ckpt.location)
    return EXIT_OK


def _extract(args: argparse.Namespace, out: Console, err: Console) -> int:
    from .options import ExtractOptions
    from .pipeline import extract
    from .report import render_extraction, to_json

    options = ExtractOptions(
        prefix=args.prefix,
        output=args.output,
        config_file=args.config,
        model=args.model,
        tokenizer=args.tokenizer,
        overrides=args.overrides,
        trust=args.trust_checkpoint,
        exporter=args.exporter,
        opset=args.opset,
        hidden_states=args.hidden_states,
        pooler=not args.no_pooler,
        atol=args.atol,
        rtol=args.rtol,
        force=args.force,
        optimize=args.optimize,
        quantize=args.quantize,
        precision=args.precision,
        runtime=args.runtime,
        keep_failed=args.keep_failed,
        max_memory=args.max_memory,
    )
    with err.status("starting") as status:

        def step(label: str) -> None:
            status.update(f"{label}...")

        report = extract(args.checkpoint, options=options, step=step)
    if args.json:
        print(to_json(report.to_dict()))
    else:
        render_extraction(out, report)
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outputs are staged: a stopped run leaves nothing half-written
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)
