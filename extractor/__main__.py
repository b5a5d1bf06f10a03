"""python -m extractor CHECKPOINT [--prefix bert.]: strip, rebuild, export, verify."""

from __future__ import annotations

import os

# Offline always: transformers and huggingface_hub read this when they are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import sys  # noqa: E402

from rich.console import Console  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would sys.exit(2); main returns 2
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m extractor",
        description="Take a transformer encoder out of a composite checkpoint, load it into a "
        "fresh AutoModel and export verified dynamic ONNX. Never downloads.",
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
        "--trust-checkpoint",
        action="store_true",
        help="allow pickles that run arbitrary code (only for trusted files)",
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
        "--keep-failed",
        action="store_true",
        help="when verification fails, keep the outputs in <output>.failed to inspect",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    out = Console()
    err = Console(stderr=True)
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        err.print(str(exc), markup=False, highlight=False)
        return EXIT_USAGE

    from transformers.utils import logging as hf_logging

    from .errors import ExtractorError, PrefixError, WeightMismatchError

    hf_logging.disable_progress_bar()  # the rich status line is the progress display

    try:
        if args.list:
            return _list(args, out)
        return _extract(args, out, err)
    except WeightMismatchError as exc:
        from .report import render_keys

        render_keys(err, exc.keys)
        _error(err, exc)
    except PrefixError as exc:
        if "several encoders" in str(exc) or "no transformer encoder" in str(exc):
            _list(args, err)
        _error(err, exc)
    except ExtractorError as exc:
        _error(err, exc)
    return EXIT_USAGE


def _error(err: Console, exc: Exception) -> None:
    err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)


def _list(args: argparse.Namespace, console: Console) -> int:
    from .checkpoint import load_checkpoint
    from .prefixes import prefix_summary
    from .report import render_prefixes, to_json

    ckpt = load_checkpoint(args.checkpoint, trust=args.trust_checkpoint)
    rows = prefix_summary(ckpt.state_dict)
    if args.json:
        print(to_json({"location": ckpt.location, "prefixes": [r.__dict__ for r in rows]}))
    else:
        render_prefixes(console, rows, ckpt.location)
    return EXIT_OK


def _extract(args: argparse.Namespace, out: Console, err: Console) -> int:
    from .pipeline import extract
    from .report import render_extraction, to_json

    with err.status("starting") as status:

        def step(label: str) -> None:
            status.update(f"{label}...")

        report = extract(
            args.checkpoint,
            args.prefix,
            args.output,
            config_file=args.config,
            model=args.model,
            trust=args.trust_checkpoint,
            exporter=args.exporter,
            opset=args.opset,
            hidden_states=args.hidden_states,
            atol=args.atol,
            rtol=args.rtol,
            force=args.force,
            optimize=args.optimize,
            quantize=args.quantize,
            keep_failed=args.keep_failed,
            step=step,
        )
    if args.json:
        print(to_json(report.to_dict()))
    else:
        render_extraction(out, report)
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
