"""Take named files out of a tar archive (`model.tar.gz`) without trusting it.

An archive is hostile until read: a member may name a path outside the folder
(`../x`, `/etc/x`), be a link or a device, declare 16 GiB, or repeat a name. Here
only the regular files asked for, by their exact names at the archive's root, are
copied, each under its own fixed name into a temporary folder that is removed
afterwards (nothing the archive names is ever used as a path); a member that escapes,
a link or device where a wanted file should be, a repeated wanted name, or declared
sizes over the memory or disk budget refuse the archive before any byte is written.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from diagnostics import limits
from diagnostics.file_kinds import describe

from ..errors import CheckpointError

TAR_KINDS = ("a gzip file", "a bzip2 file", "an xz file")
_MAX_MEMBERS = 100_000
_CHUNK = 1 << 20


def is_tar(path: Path) -> bool:
    """Whether `path` is a file that reads as a (compressed) tar archive by its bytes."""
    if not path.is_file():
        return False
    try:
        kind = describe(path)
        if kind in TAR_KINDS:
            return True
        with path.open("rb") as handle:  # a plain tar: "ustar" at offset 257
            handle.seek(257)
            return handle.read(5) == b"ustar"
    except OSError:
        return False


@contextlib.contextmanager
def extracted(path: Path, wanted: tuple[str, ...], max_memory: int | None = None,
              max_sizes: dict[str, int] | None = None) -> Iterator[dict[str, Path]]:
    """The wanted root-level regular files of the archive, copied into a temporary folder.

    Yields a mapping of each name found to its copy; the folder is removed on exit.
    `max_sizes` caps single members (a config.json of 10 GiB is refused unread).

    Raises:
        CheckpointError: not a readable tar, a member that escapes the archive's folder,
            a wanted name that is a link or device or appears twice, or declared sizes
            over the memory budget or the free disk space.
    """
    with _open(path) as archive:
        chosen = _chosen(path, archive, wanted)
        for name, member in chosen.items():
            cap = (max_sizes or {}).get(name)
            if cap is not None and member.size > cap:
                raise CheckpointError(f"{path}: member {name!r} declares "
                                      f"{limits.human(member.size)}, over the "
                                      f"{limits.human(cap)} such a file may take; refused")
        total = sum(m.size for m in chosen.values())
        problem = limits.too_large(f"{path.name}'s {', '.join(chosen)} unpacked", total,
                                   max_memory)
        if problem:
            raise CheckpointError(f"{path}: {problem}")
        with tempfile.TemporaryDirectory(prefix="subgraft-archive-") as folder:
            free = shutil.disk_usage(folder).free
            if total > free:
                raise CheckpointError(f"{path}: unpacking {', '.join(chosen)} needs "
                                      f"{limits.human(total)}, more than the "
                                      f"{limits.human(free)} free in {Path(folder).parent}")
            yield {name: _copy(path, archive, member, Path(folder) / name)
                   for name, member in chosen.items()}


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    with archive:
        yield archive


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    what = describe(path) if path.is_file() else "not a file"
    # tarfile's own first line may end in ":" before the methods it tried, one per line.
    reason = str(exc).strip().splitlines()[0].rstrip(": ")[:160] if str(exc).strip() else ""
    reason = reason or type(exc).__name__
    return CheckpointError(f"{path} is {what}, not a readable tar archive (model.tar.gz): "
                           f"{reason}")


def _chosen(path: Path, archive: tarfile.TarFile, wanted: tuple[str, ...]
            ) -> dict[str, tarfile.TarInfo]:
    """The wanted members by name, every member's name checked on the way."""
    chosen: dict[str, tarfile.TarInfo] = {}
    try:
        for count, member in enumerate(archive, 1):
            if count > _MAX_MEMBERS:
                raise CheckpointError(f"{path} holds more than {_MAX_MEMBERS} members; refused")
            name = _checked_name(path, member)
            if name not in wanted:
                continue
            if not member.isreg():
                raise CheckpointError(f"{path}: member {name!r} is a {_kind(member)}, not a "
                                      "file; refused")
            if name in chosen:
                raise CheckpointError(f"{path}: member {name!r} appears twice; refused (which "
                                      "one a reader takes is not defined)")
            chosen[name] = member
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    return chosen


def _checked_name(path: Path, member: tarfile.TarInfo) -> str:
    """The member's name relative to the archive's root; refuse one that leaves it
    (absolute, `..`), and a link whose target does."""
    name = PurePosixPath(member.name.replace("\\", "/"))
    for candidate in (name, *([PurePosixPath(member.linkname)] if member.issym() or
                              member.islnk() else [])):
        if candidate.is_absolute() or ".." in candidate.parts:
            raise CheckpointError(f"{path}: member {member.name[:120]!r} "
                                  f"{'points' if candidate is not name else 'leads'} outside "
                                  "the archive's folder; refused")
    parts = [p for p in name.parts if p != "."]
    return "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return "link"
    if member.isdir():
        return "directory"
    return "device or special file"


def _copy(path: Path, archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path
          ) -> Path:
    """Copy at most the declared size to `target` (our name, never the member's); a stream
    that runs short is a truncated archive."""
    remaining = member.size
    try:
        source = archive.extractfile(member)
        if source is None:  # only regular files were chosen
            raise CheckpointError(f"{path}: member {member.name!r} cannot be read")
        with source, target.open("wb") as out:
            while remaining:
                chunk = source.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc).strip() else "truncated"
        raise CheckpointError(f"{path}: member {member.name!r} cannot be read: {reason}"
                              ) from None
    if remaining:
        raise CheckpointError(f"{path}: member {member.name!r} is truncated ({remaining} of "
                              f"{member.size} bytes missing)")
    return target
