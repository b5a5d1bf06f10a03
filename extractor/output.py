"""Write outputs atomically: build in a sibling temporary directory, move in on success.

An existing output directory is replaced only when it is ours (it holds a
`report.json` written by this tool) or `--force` is given; a directory that
holds the input checkpoint is never touched. The old and the new directory
trade places in one step (`diagnostics.atomic`, the one writer every command
uses), so a run killed at any moment leaves the old output or the new one,
complete; staging directories a killed run could not remove are removed by the
next run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from diagnostics import atomic
from diagnostics.errors import OutputFileError
from diagnostics.file_kinds import read_json

from .errors import OutputError

TOOL = "subgraft"
REPORT_NAME = "report.json"


def default_output(checkpoint: Path, prefix: str) -> Path:
    """`<dir>/<stem>-<prefix>-onnx` next to the checkpoint."""
    label = prefix.strip(".").replace(".", "-") or "encoder"
    stem = checkpoint.name if checkpoint.is_dir() else checkpoint.stem
    return checkpoint.resolve().parent / f"{stem}-{label}-onnx"


def failed_output(output: Path) -> Path:
    """Where `--keep-failed` puts the outputs of a run that failed verification."""
    return output.with_name(output.name + ".failed")


def check_output(output: Path, inputs: list[Path], force: bool = False) -> None:
    """Refuse an output that would overwrite an input or a directory that is not ours."""
    target = output.resolve()
    for source in inputs:
        source = source.resolve()
        if source == target or target in source.parents:
            raise OutputError(f"output {output} would overwrite the input {source}")
    if not output.exists():
        return
    if not output.is_dir():
        raise OutputError(f"output {output} exists and is a file; choose another -o")
    if force or is_ours(output) or not any(output.iterdir()):
        return
    raise OutputError(
        f"output {output} exists and was not written by {TOOL}; "
        "choose another -o or pass --force to replace it"
    )


def is_ours(directory: Path) -> bool:
    try:  # a report.json nested 100,000 deep is not ours either
        return read_json(directory / REPORT_NAME).get("tool") == TOOL
    except (ValueError, AttributeError):
        return False


@contextlib.contextmanager
def staging_dir(output: Path) -> Iterator[Path]:
    """A temporary directory beside `output`, removed unless `commit` moved it; a folder
    created for the output is removed again if the run fails (`diagnostics.atomic`).

    Raises:
        OutputError: the folder cannot be written, or the disk filled up while writing.
    """
    try:
        with atomic.staging_dir(output) as staging:
            yield staging
    except OutputFileError as exc:
        raise OutputError(str(exc)) from None


def commit(staging: Path, output: Path) -> None:
    """Move a finished staging directory into place, replacing an old output at once."""
    atomic.commit_dir(staging, output)


def write_json(path: Path, data: object) -> None:
    atomic.write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
