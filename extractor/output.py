"""Write outputs atomically: build in a sibling temporary directory, move in on success.

An existing output directory is replaced only when it is ours (it holds a
`report.json` written by this tool) or `--force` is given; a directory that
holds the input checkpoint is never touched. The old and the new directory
trade places in one step (Linux `renameat2(RENAME_EXCHANGE)`), so a run killed
at any moment leaves the old output or the new one, complete; staging
directories a killed run could not remove are removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import sys
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
    """A temporary directory beside `output`, removed unless `commit` moved it.

    Raises:
        OutputError: the disk (or a size limit) filled up while writing into it.
    """
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(output)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.{os.getpid()}.", suffix=".tmp",
                                        dir=output.parent))
    except OSError as exc:
        raise OutputError(f"cannot write beside {output}: {exc.strerror or exc}") from None
    try:
        yield staging
    except Exception as exc:
        if out_of_space(exc):
            raise OutputError(f"no space left writing {output} ({_reason(exc)}); nothing was "
                              "written") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def commit(staging: Path, output: Path) -> None:
    """Move a finished staging directory into place, replacing an old output at once."""
    if output.exists() and _exchange(staging, output):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old output
        return
    if output.exists():  # no atomic exchange here: a moment without the output
        old = output.with_name(f".{output.name}.{os.getpid()}.old.tmp")
        output.rename(old)
        staging.rename(output)
        shutil.rmtree(old, ignore_errors=True)
        return
    staging.rename(output)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories in one step (Linux renameat2); False where unsupported."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd, rename_exchange = -100, 2
    done = renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), rename_exchange)
    return done == 0


def _remove_abandoned(output: Path) -> None:
    """Staging directories of runs that were killed (their process is gone)."""
    for leftover in output.parent.glob(f".{output.name}.*.tmp"):
        pid = leftover.name[len(output.name) + 2 :].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_FULL_TEXT = ("No space left on device", "File too large", "Disk quota exceeded")


def out_of_space(exc: BaseException) -> bool:
    """Whether a write failed because the disk or a size limit is full, however the
    writing library wrapped the OS error (torch, safetensors, protobuf, a child process)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return True
        if any(text in str(seen) for text in _FULL_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    return next((t for t in _FULL_TEXT if t in str(exc)), None) or os.strerror(
        getattr(exc, "errno", None) or errno.ENOSPC)


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
