"""`python -m extractor [extract] CHECKPOINT`: strip, rebuild, export, verify.

The parser is built in groups that follow the help's order (what to read, what describes
the encoder, the export, the tiers beside it, the run); the handler turns the arguments
into one `ExtractOptions` and renders what `pipeline.extract` returns.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console

from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, print_error

if TYPE_CHECKING:
    from ..options import ExtractOptions


def add_extract(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "extract",
        prog="python -m extractor extract",
        usage="python -m extractor [extract] CHECKPOINT [--prefix PREFIX] [options]",
        help="(the default) take the encoder out, export ONNX and verify it",
        description="Take a transformer encoder out of a composite checkpoint, load it into a "
        "fresh model of its own type (any encoder transformers builds) and export verified dynamic "
        "ONNX. Never downloads, never guesses a config.",
    )
    _add_source_arguments(parser)
    _add_config_arguments(parser)
    _add_export_arguments(parser)
    _add_tier_arguments(parser)
    _add_run_arguments(parser)
    parser.set_defaults(handler=_extract_command)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint, which encoder in it, and where the output goes."""
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


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """What describes the encoder (config, tokenizer, set values) and how its file is read."""
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


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The exporter, the outputs of model.onnx, its parity tolerances, replacing an output."""
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


def _add_tier_arguments(parser: argparse.ArgumentParser) -> None:
    """The files beside model.onnx, each behind its own check."""
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


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """How the run fails, how much memory it may take, how it reports."""
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


def _size(text: str) -> int:
    from diagnostics.limits import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _extract_command(args: argparse.Namespace, out: Console, err: Console) -> int:
    from transformers.utils import logging as hf_logging

    from ..errors import ExtractorError, PrefixError, WeightMismatchError

    hf_logging.disable_progress_bar()  # the rich status line is the progress display

    try:
        if args.list:
            return _list(args, out)
        args.overrides = _overrides(args.set)
        return _extract(args, out, err)
    except WeightMismatchError as exc:
        from ..report import render_keys

        render_keys(err, exc.keys)
        print_error(err, exc)
    except PrefixError as exc:
        if "several encoders" in str(exc) or "no transformer encoder" in str(exc):
            _list(args, out)  # what there is, to choose from: on stdout, the error alone on stderr
        print_error(err, exc)
    except ExtractorError as exc:
        print_error(err, exc)
    return EXIT_USAGE


def _overrides(items: list[str]) -> dict[str, object]:
    """`--set a=1,b=gelu` -> {"a": 1, "b": "gelu"}; values are JSON where they parse."""
    import json

    from diagnostics.limits import json_depth_problem

    from ..errors import ExtractorError

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


def _list(args: argparse.Namespace, console: Console) -> int:
    from ..report import render_prefixes, to_json
    from ..resolve.opening import open_checkpoint
    from ..resolve.prefixes import prefix_summary

    ckpt = open_checkpoint(args.checkpoint, trust=args.trust_checkpoint,
                           max_memory=args.max_memory)
    rows = prefix_summary(ckpt.state_dict)
    if args.json:
        print(to_json({"location": ckpt.location, "prefixes": [r.__dict__ for r in rows]}))
    else:
        render_prefixes(console, rows, ckpt.location)
    return EXIT_OK


def _extract(args: argparse.Namespace, out: Console, err: Console) -> int:
    from ..pipeline import extract
    from ..report import render_extraction, to_json

    options = _options(args)
    with err.status("starting") as status:

        def step(label: str) -> None:
            status.update(f"{label}...")

        report = extract(args.checkpoint, options=options, step=step)
    if args.json:
        print(to_json(report.to_dict()))
    else:
        render_extraction(out, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _options(args: argparse.Namespace) -> ExtractOptions:
    from ..options import ExtractOptions

    return ExtractOptions(
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
