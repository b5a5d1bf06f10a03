"""The one atomic writer: every output of every command appears whole, or not at all.

- A directory output (the extractor's) is built in a staging directory beside it
  and swapped in with one `renameat2(RENAME_EXCHANGE)`: a run killed at any
  moment leaves the old output or the new one.
- A file output (repair's model, Netron's annotated copies, caches) is written
  under a staged name in its own folder, flushed to disk, and renamed into place.
- A model with external data is committed as one unit: its data file's name
  carries the data's content hash (`fixed.onnx.<sha256:16>.data`), so the data
  goes in first under a name no other model reads, the model's rename is the
  single step that switches, and an old model can never read new weights.
  Hashed data files that no model (nor a live run's staged model) reads are
  removed after a commit and by the next run.
- Staged names carry the writing process's id (`.NAME.PID.*`); the next run
  removes those whose process is gone. Folders a run created for its output are
  removed again when it fails. Everything honours the umask.

Failures to write (a read-only folder, a full disk) are `OutputFileError`: one line.
The extractor imports this module for its own output directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import OutputFileError

_HASHED = re.compile(r"\.[0-9a-f]{16}\.data$")
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_FULL_TEXT = ("No space left on device", "File too large", "Disk quota exceeded")


def staged_name(final: Path, tag: str) -> Path:
    """A hidden name beside `final` that this process owns: `.NAME.PID.TAG`."""
    return final.with_name(f".{final.name}.{os.getpid()}.{tag}")


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def output_folder(folder: Path) -> Iterator[None]:
    """Create `folder` (and missing parents); on leaving, remove those it created that are
    still empty, so a run that wrote nothing leaves no folder behind."""
    created = []
    probe = folder.absolute()
    while not probe.exists() and probe.parent != probe:
        created.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(created)
        raise OutputFileError(f"cannot create {folder}: {os_reason(exc)}") from None
    try:
        yield
    finally:
        _remove_empty(created)


def _remove_empty(created: list[Path]) -> None:
    for folder in created:  # deepest first; a folder holding the output stays
        with contextlib.suppress(OSError):
            folder.rmdir()


# -- directories -----------------------------------------------------------------------------


@contextlib.contextmanager
def staging_dir(output: Path) -> Iterator[Path]:
    """A temporary directory beside `output`, removed unless `commit_dir` moved it.

    A folder created for `output`'s parent is removed again if the block fails.
    """
    with output_folder(output.parent):
        remove_abandoned(output)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.{os.getpid()}.",
                                            suffix=".tmp", dir=output.parent))
            staging.chmod(0o777 & ~umask())  # mkdtemp's 0700 would survive the swap
        except OSError as exc:
            raise OutputFileError(f"cannot write beside {output}: {os_reason(exc)}") from None
        try:
            yield staging
        except Exception as exc:
            if out_of_space(exc):
                raise OutputFileError(f"no space left writing {output} ({_full_reason(exc)}); "
                                      "nothing was written") from None
            if isinstance(exc, PermissionError):
                raise OutputFileError(f"cannot write {output}: {os_reason(exc)}; nothing was "
                                      "written") from None
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def commit_dir(staging: Path, output: Path) -> None:
    """Move a finished staging directory into place, replacing an old output at once."""
    _honour_umask(staging)
    if output.exists() and _exchange(staging, output):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old output
        return
    if output.exists():  # no atomic exchange on this system: a moment without the output
        old = output.with_name(f".{output.name}.{os.getpid()}.old.tmp")
        output.rename(old)
        staging.rename(output)
        shutil.rmtree(old, ignore_errors=True)
        return
    staging.rename(output)


def _honour_umask(folder: Path) -> None:
    """Give what libraries wrote with private modes (safetensors' 0600) the umask's modes."""
    mask = umask()
    for path in (folder, *folder.rglob("*")):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


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


# -- files -------------------------------------------------------------------------------------


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (a staged name, flushed, renamed)."""
    return write_with(path, lambda staged: staged.write_bytes(data))


def write_with(path: Path, writer: Callable[[Path], object]) -> Path:
    """Let `writer` fill a staged file beside `path`, then rename it into place."""
    staged = staged_name(path, "partial")
    try:
        writer(staged)
        _flush(staged)
        os.replace(staged, path)
    except OSError as exc:
        why = os_reason(exc)
        raise OutputFileError(f"cannot write {path}: {why}; nothing was written") from None
    finally:
        with contextlib.suppress(OSError):
            staged.unlink()
    return path


def commit_file(staged: Path, final: Path) -> None:
    """Rename a finished staged file into place (the one step a reader can observe)."""
    try:
        _flush(staged)
        os.replace(staged, final)
    except OSError as exc:
        why = os_reason(exc)
        raise OutputFileError(f"cannot write {final}: {why}; nothing was written") from None


def hashed_data_name(model_name: str, data: Path) -> str:
    """`MODEL.<sha256:16>.data`: the name an external data file is committed under."""
    digest = hashlib.sha256()
    with open(data, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{model_name}.{digest.hexdigest()[:16]}.data"


def is_hashed_data(name: str, model_name: str) -> bool:
    return name.startswith(model_name + ".") and bool(_HASHED.search(name)) and \
        len(name) == len(model_name) + 22


def remove_abandoned(
    final: Path, referenced: Callable[[Path], set[str] | None] | None = None
) -> None:
    """What killed runs left beside `final`: staged names of dead processes, and (given
    `referenced`, which names the data files a model reads, None where it cannot tell)
    hashed data files that neither `final` nor a live run's staged model reads."""
    folder = final.parent
    if not folder.is_dir():
        return
    live_staged = []
    for leftover in folder.glob(f".{glob_escape(final.name)}.*"):
        pid = leftover.name[len(final.name) + 2 :].split(".")[0]
        if not pid.isdigit():
            continue
        if int(pid) != os.getpid() and not _alive(int(pid)):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    leftover.unlink()
        elif leftover.is_file():
            live_staged.append(leftover)
    if referenced is None:
        return
    keep: set[str] = set()
    for model in (final, *live_staged):
        if model.is_file():
            names = referenced(model)
            if names is None:
                return  # a model we cannot read may read any of them
            keep |= names
    for data in folder.glob(f"{glob_escape(final.name)}.*.data"):
        if is_hashed_data(data.name, final.name) and data.name not in keep:
            with contextlib.suppress(OSError):
                data.unlink()


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flush(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


# -- reasons -----------------------------------------------------------------------------------


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


def _full_reason(exc: BaseException) -> str:
    return next((t for t in _FULL_TEXT if t in str(exc)), None) or os.strerror(
        getattr(exc, "errno", None) or errno.ENOSPC)


def os_reason(exc: OSError) -> str:
    """One line for a failed write: "File too large", "Read-only file system"."""
    if out_of_space(exc):
        return _full_reason(exc)
    text = exc.strerror or (str(exc).splitlines() or [""])[0]
    return text or type(exc).__name__
