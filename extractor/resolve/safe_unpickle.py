"""Unpickle a checkpoint without running its code: classes torch refuses become inert stand-ins.

Untrusted files go through `torch.load(weights_only=True)`; each class it refuses (a
project's `Config`, `argparse.Namespace`, a pickled module) is read as a `StandIn` that
keeps the object's data and runs none of its code; a pickle that calls code is refused.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from diagnostics.errors import first_line

from ..errors import CheckpointError, UnsafeCheckpointError

_MAX_STAND_INS = 64


def torch_load(path: Path, trust: bool, fmt: str, mappable: bool = True
                ) -> tuple[Any, str, bool, tuple[str, ...]]:
    """The unpickled object, its format, whether it is memory-mapped, and the stand-ins used.

    Untrusted files go through torch's weights-only unpickler. A class it does not
    allow (a project's `Config`, `argparse.Namespace`, a pickled module) is replaced
    by an inert stand-in that keeps the object's data and runs none of its code, so a
    checkpoint from a project that is not installed still yields its weights and config.
    """
    is_zip = fmt == "torch-zip" and mappable
    if trust:
        return _trusted_load(path, is_zip), fmt, is_zip, ()
    stand_ins: dict[str, type] = {}
    while True:
        try:
            with torch.serialization.safe_globals([(c, n) for n, c in stand_ins.items()]), \
                    _quietly():
                # mmap keeps the weights in the page cache instead of copying them into RAM.
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
            return obj, fmt, is_zip, tuple(stand_ins)
        except pickle.UnpicklingError as exc:
            name = _unsupported_global(str(exc))
            if name is None or name in stand_ins or len(stand_ins) >= _MAX_STAND_INS:
                raise _unpickling_error(path, exc) from None
            stand_ins[name] = stand_in_class(name)
        except Exception as exc:  # recognised as torch's format: a failure is the file's
            raise _corrupt(path, exc) from None


def _trusted_load(path: Path, is_zip: bool) -> Any:
    try:
        with _quietly():
            return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
    except ModuleNotFoundError as exc:
        raise CheckpointError(
            f"{path} pickles objects from module {exc.name!r}, which is not importable: make "
            "the source of the project that saved it importable (PYTHONPATH), or leave out "
            "--trust-checkpoint to read its data without running its code"
        ) from None
    except Exception as exc:  # recognised as torch's format: a failure is the file's
        raise _corrupt(path, exc) from None


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """torch warns about what a file holds (TypedStorage of quantized tensors, deprecated
    kinds) while loading it: the file's business, said in our own words or not at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class StandIn:
    """Holds the data of a pickled object whose class is not loaded; runs nothing."""

    pickled_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state, slots = state
            self.__dict__.update(slots)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.pickled_name}>"


def stand_in_class(name: str) -> type:
    module, _, qualname = name.rpartition(".")
    return type(qualname, (StandIn,), {"pickled_name": name, "__module__": module or "pickled"})


def attributes(obj: Any) -> dict[str, Any] | None:
    """A config-like object's data: a dict as is, else its attributes (stand-ins included)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (str, bytes, int, float, list, tuple, set, torch.Tensor)) or obj is None:
        return None
    values = getattr(obj, "__dict__", None)
    return {k: v for k, v in values.items() if not k.startswith("_")} if values else None


def _unsupported_global(message: str) -> str | None:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return found.group(1) if found else None


def _unpickling_error(path: Path, exc: Exception) -> CheckpointError:
    message = str(exc)
    blocked = re.search(r"unsupported GLOBAL ([\w.]+) whose module \w+ is blocked", message)
    if blocked:
        return UnsafeCheckpointError(
            f"{path} is unsafe: its pickle calls {blocked.group(1)} (it would run code on "
            "load); refused"
        )
    return _corrupt(path, exc)


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    # torch puts the reason on the line after "WeightsUnpickler error:" (2.13).
    reason = re.search(r"WeightsUnpickler error:\s*(\S.*)", str(exc))
    return CheckpointError(
        f"{path} cannot be read as a PyTorch checkpoint (truncated, corrupt or not a "
        f"checkpoint): {reason.group(1)[:200] if reason else first_line(exc)}"
    )
