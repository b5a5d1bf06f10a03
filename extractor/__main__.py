"""python -m extractor [extract] CHECKPOINT [--prefix bert.]: strip, rebuild, export, verify.

python -m extractor bench DIR: time an output directory's models against PyTorch.

python -m extractor graft-check DIR --parent MODULE:FACTORY --submodule bert --batches FILE:
graft the output back into its model and compare the model's outputs both ways.

Real subcommands, one module each in the `cli` room; `extract` is the default, so
`python -m extractor CKPT` works (a checkpoint named like a command: `python -m
extractor extract bench`). Heavy modules are imported by the command that needs them:
help and usage errors are instant.
"""

from __future__ import annotations

import os

# Offline always: transformers and huggingface_hub read this when they are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import sys  # noqa: E402

from diagnostics.untrusted import console  # noqa: E402
from diagnostics.usage import Parser, UsageError, for_command, print_usage_error  # noqa: E402

from .cli.bench import add_bench  # noqa: E402
from .cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, MESSAGE_LIMIT  # noqa: E402
from .cli.extract import add_extract  # noqa: E402
from .cli.graft_check import add_graft_check  # noqa: E402

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

COMMANDS = ("extract", "bench", "graft-check")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m extractor",
        usage="python -m extractor [extract] CHECKPOINT [options] | bench DIR | graft-check DIR",
        description="Take a transformer encoder out of a composite checkpoint, load it into a "
        "fresh model of its own type (any encoder transformers builds) and export verified dynamic "
        "ONNX. Never downloads, never guesses a config. `extract` is the default command: "
        "python -m extractor CHECKPOINT --prefix bert.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{extract,bench,graft-check}",
                                     parser_class=Parser)
    add_extract(commands)
    add_bench(commands)
    add_graft_check(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    out = console()
    err = console(stderr=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in (*COMMANDS, "-h", "--help"):  # extract is the default command
        argv.insert(0, "extract")
    parser = _parser()
    try:
        if not argv:
            raise UsageError("python -m extractor: give a checkpoint (or a command: "
                             f"{', '.join(COMMANDS[1:])})", parser.format_usage().strip())
        args = parser.parse_args(argv)
    except UsageError as exc:
        print_usage_error(err, for_command(exc, parser, argv), MESSAGE_LIMIT)
        return EXIT_USAGE
    return args.handler(args, out, err)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outputs are staged: a stopped run leaves nothing half-written
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)
