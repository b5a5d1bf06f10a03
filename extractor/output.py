"""Write outputs atomically: build in a sibling temporary directory, move in on success.

An existing output directory is replaced only when it is ours (it holds a
`report.json` written by this tool) or `--force` is given; a directory that
holds the input checkpoint is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
    try:
        return json.loads((directory / REPORT_NAME).read_text()).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def staging_dir(output: Path) -> Iterator[Path]:
    """A temporary directory beside `output`, removed unless `commit` moved it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def commit(staging: Path, output: Path) -> None:
    """Move a finished staging directory into place, replacing an old output."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        output.rename(old)
    staging.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
