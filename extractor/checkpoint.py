"""Load a composite checkpoint safely and find the state dict inside it.

Pickles are loaded with `torch.load(weights_only=True)` (memory-mapped when the
file is a zip archive), so a checkpoint that needs arbitrary code is refused
unless the caller trusts it. The state dict is searched for wherever it sits.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpointError

StateDict = dict[str, torch.Tensor]

# Keys under which training code usually stores the model's state dict, best first.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "network", "net")
_MAX_DEPTH = 4
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".mdl")
_DIRECTORY_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class Checkpoint:
    """A loaded checkpoint: its state dict plus everything stored beside it."""

    path: Path
    format: str  # "torch-zip", "torch-legacy", "safetensors" or "directory:<inner format>"
    state_dict: StateDict
    location: str  # where the state dict was found, e.g. "checkpoint['model']"
    extra: dict[str, Any] = field(default_factory=dict)  # top-level non-state-dict entries
    trusted: bool = False
    mmap: bool = False



def load_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """Load a checkpoint file or a directory holding weights.

    Args:
        path: a `.bin/.pt/.pth/.ckpt/.mdl` pickle (zip or legacy), a `.safetensors`
            file, or a directory (Hugging Face layout or a single weights file).
        trust: allow pickles that need arbitrary code (`torch.load(weights_only=False)`).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such file or directory: {path}")
    if path.is_dir():
        return _load_directory(path, trust)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        state_dict = _load_safetensors(path)
        return Checkpoint(path, "safetensors", state_dict, "top level", trusted=trust)
    obj, fmt, mmap = _torch_load(path, trust)
    state_dict, location = find_state_dict(obj, path)
    extra = _extra_entries(obj, state_dict)
    return Checkpoint(path, fmt, state_dict, location, extra, trusted=trust, mmap=mmap)


def _load_directory(path: Path, trust: bool) -> Checkpoint:
    weights = _directory_weights(path)
    if weights is None:
        raise CheckpointError(
            f"{path} is a directory without weights (looked for "
            f"{', '.join(_DIRECTORY_WEIGHTS)} or a single *.safetensors/*.bin/*.pt file)"
        )
    if weights.name.endswith(".index.json"):
        state_dict = _load_sharded(weights, trust)
        inner = "sharded"
        location, extra = "top level", {}
    else:
        inner_ckpt = load_checkpoint(weights, trust)
        state_dict, inner = inner_ckpt.state_dict, inner_ckpt.format
        location, extra = inner_ckpt.location, inner_ckpt.extra
    config_file = path / "config.json"
    if config_file.is_file():
        extra = {**extra, "config.json": str(config_file)}
    return Checkpoint(path, f"directory:{inner}", state_dict, location, extra, trusted=trust)


def _directory_weights(path: Path) -> Path | None:
    for name in _DIRECTORY_WEIGHTS:
        if (path / name).is_file():
            return path / name
    singles = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if len(singles) == 1:
        return singles[0]
    if len(singles) > 1:
        names = ", ".join(p.name for p in singles)
        raise CheckpointError(f"{path} holds several weight files ({names}); pass one of them")
    return None


def _load_sharded(index_file: Path, trust: bool) -> StateDict:
    try:
        weight_map = json.loads(index_file.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{index_file} is not a valid shard index: {exc}") from None
    state_dict: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        state_dict.update(load_checkpoint(index_file.parent / shard, trust).state_dict)
    return state_dict


def _looks_like_safetensors(path: Path) -> bool:
    # A safetensors file starts with a little-endian u64 header length, then '{'.
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30


def _load_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None


def _torch_load(path: Path, trust: bool) -> tuple[Any, str, bool]:
    is_zip = zipfile.is_zipfile(path)
    fmt = "torch-zip" if is_zip else "torch-legacy"
    try:
        # mmap keeps the weights in the page cache instead of copying them into RAM.
        obj = torch.load(path, map_location="cpu", weights_only=not trust, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(path, exc, trust) from None
    except (
        RuntimeError,
        EOFError,
        KeyError,
        ValueError,
        OSError,
        AttributeError,
        ModuleNotFoundError,
        ImportError,
        TypeError,
    ) as exc:
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint (truncated, corrupt or not a "
            f"checkpoint): {_first_line(exc)}"
        ) from None
    return obj, fmt, is_zip


def _unpickling_error(path: Path, exc: Exception, trust: bool) -> CheckpointError:
    message = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if trust or found is None:
        # torch puts the reason on the line after "WeightsUnpickler error:" (2.13).
        reason = re.search(r"WeightsUnpickler error:\s*(\S.*)", message)
        return CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint (truncated, corrupt or not a "
            f"checkpoint): {reason.group(1)[:200] if reason else _first_line(exc)}"
        )
    name = found.group(1)
    if name.startswith("torch."):
        # torch's own globals are allowed; a mangled one means the stream was cut short.
        return CheckpointError(f"{path} looks truncated or corrupt (unpickler stopped at {name})")
    return UnsafeCheckpointError(
        f"{path} needs arbitrary code to load (it pickles {name}); rerun with "
        "--trust-checkpoint only if you trust where it came from"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def find_state_dict(obj: Any, path: Path | str = "checkpoint") -> tuple[StateDict, str]:
    """Return the largest mapping of names to tensors inside `obj` and where it was.

    Looks at the top level, the usual keys (`model`, `state_dict`, `module`,
    `model_state_dict`, ...) and nested dicts; a pickled `nn.Module` (trusted
    loads only) gives its `state_dict()`.
    """
    candidates: list[tuple[int, int, StateDict, str]] = []
    _collect_state_dicts(obj, "checkpoint", 0, candidates)
    if not candidates:
        raise CheckpointError(f"{path} holds no state dict (no mapping of names to tensors found)")
    # Most tensors wins; among equals, the more conventional key, then the shallower.
    candidates.sort(key=lambda c: (-c[0], c[1], c[3].count("[")))
    _, _, state_dict, location = candidates[0]
    return state_dict, location


def _collect_state_dicts(obj: Any, where: str, depth: int, out: list) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, torch.nn.Module):
        out.append((len(obj.state_dict()), 0, dict(obj.state_dict()), f"{where}.state_dict()"))
        return
    if not isinstance(obj, Mapping):
        return
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    # A few non-tensor entries (e.g. `_extra_state`) still make a state dict.
    if tensors and len(tensors) >= 0.9 * len(obj):
        key = where.rsplit("['", 1)[-1].rstrip("']")
        rank = _STATE_DICT_KEYS.index(key) if key in _STATE_DICT_KEYS else len(_STATE_DICT_KEYS)
        out.append((len(tensors), rank, tensors, "top level" if depth == 0 else where))
        return
    for key, value in obj.items():
        if isinstance(key, str):
            _collect_state_dicts(value, f"{where}[{key!r}]", depth + 1, out)


def _extra_entries(obj: Any, state_dict: StateDict) -> dict[str, Any]:
    """The checkpoint's top-level entries other than the state dict (config, vocabs, ...)."""
    if not isinstance(obj, Mapping):
        return {}
    return {
        k: v
        for k, v in obj.items()
        if isinstance(k, str)
        and v is not state_dict
        and not _is_tensor_mapping(v)
        and not isinstance(v, torch.Tensor)
    }


def _is_tensor_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(v, torch.Tensor) for v in value.values())


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """The entries under `prefix`, with the prefix removed (empty if none)."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
