"""`python -m extractor graft-check DIR --parent MODULE:FACTORY --submodule NAME --batches FILE`:
graft the output back into its model and compare the model's outputs both ways.

Exit 0 when every output agrees within tolerance, 1 when not, 2 for bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from diagnostics.errors import first_line

from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, print_error


def add_graft_check(commands: argparse._SubParsersAction) -> None:
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

    from ..errors import ExtractorError
    from ..graft import OnnxEncoder, load_factory, verify_graft
    from ..report import render_graft, to_json

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
        print_error(err, exc)
        return EXIT_USAGE
    if args.json:
        print(to_json(report.to_dict()))
    else:
        render_graft(out, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _load_batches(path: Path) -> list:
    import pickle

    import torch

    from ..errors import ExtractorError

    try:
        batches = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        first = first_line(exc)
        raise ExtractorError(f"--batches {path} cannot be read: {first}") from None
    if isinstance(batches, (dict, torch.Tensor)) or not isinstance(batches, (list, tuple)):
        batches = [batches]
    return list(batches)
