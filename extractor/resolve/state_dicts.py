"""Find the state dict inside an unpickled checkpoint, strip its prefix, refuse what no model takes.

The state dict is the largest mapping of names to tensors, wherever it sits (a pickled
module's stand-in included); weights no fresh model can hold (meta, quantized, complex,
integer where floats belong) are refused all at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .pickled_models import MAX_DEPTH, dynamically_quantized
from .safe_unpickle import StandIn

StateDict = dict[str, torch.Tensor]

# Keys under which training code usually stores the model's state dict, best first.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "network", "net")


def find_state_dict(obj: Any, path: Path | str = "checkpoint") -> tuple[StateDict, str]:
    """Return the largest mapping of names to tensors inside `obj` and where it was.

    Looks at the top level, the usual keys (`model`, `state_dict`, `module`,
    `model_state_dict`, ...) and nested dicts; a pickled `nn.Module` gives its
    `state_dict()`, and so does the stand-in of one whose class was not loaded.
    """
    quantized = dynamically_quantized(obj)
    if quantized:
        raise CheckpointError(
            f"{path} is a dynamically quantized checkpoint (torch.ao.quantization."
            f"quantize_dynamic: packed int8 weights at {quantized}), which no fresh encoder "
            "can hold; extract from the float checkpoint it came from")
    candidates: list[tuple[int, int, StateDict, str]] = []
    _collect_state_dicts(obj, "checkpoint", 0, candidates)
    if not candidates:
        raise CheckpointError(f"{path} holds no state dict (no mapping of names to tensors found)")
    # Most tensors wins; among equals, the more conventional key, then the shallower.
    candidates.sort(key=lambda c: (-c[0], c[1], c[3].count("[")))
    _, _, state_dict, location = candidates[0]
    return state_dict, location


def _collect_state_dicts(obj: Any, where: str, depth: int, out: list) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(obj, torch.nn.Module):
        out.append((len(obj.state_dict()), 0, dict(obj.state_dict()), f"{where}.state_dict()"))
        return
    if isinstance(obj, StandIn) and "_modules" in obj.__dict__:
        state_dict = _module_state_dict(obj)
        out.append((len(state_dict), 0, state_dict, f"{where}.state_dict()"))
        return
    if isinstance(obj, StandIn):
        obj = obj.__dict__
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


def _module_state_dict(module: StandIn, prefix: str = "",
                       ancestors: frozenset[int] = frozenset()) -> StateDict:
    """What `state_dict()` would give for a pickled module read as a stand-in. A module
    shared by two parents is listed under both, as torch lists it; one that holds its
    own ancestor (a pickle may link it so) is not followed into that loop."""
    ancestors = ancestors | {id(module)}
    found: StateDict = {}
    for kind in ("_parameters", "_buffers"):
        for name, tensor in (module.__dict__.get(kind) or {}).items():
            if isinstance(tensor, torch.Tensor) and name not in module.__dict__.get(
                "_non_persistent_buffers_set", ()
            ):
                found[prefix + name] = tensor
    for name, child in (module.__dict__.get("_modules") or {}).items():
        if isinstance(child, StandIn) and id(child) not in ancestors:
            found.update(_module_state_dict(child, f"{prefix}{name}.", ancestors))
    return found


def extra_entries(obj: Any, state_dict: StateDict) -> dict[str, Any]:
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


def refuse_unusable(weights: StateDict, prefix: str = "") -> None:
    """Refuse encoder weights no fresh model can take, all named at once: tensors without
    data (meta), quantized or complex ones, and integer or boolean ones where a model
    has floating-point weights (only position and token-type id buffers are integers).

    Raises:
        CheckpointError: the first such key with its dtype, and how many there are.
    """
    found = [(prefix + key, why) for key, tensor in weights.items()
             if (why := _unusable(key, tensor))]
    if not found:
        return
    key, why = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    advice = ("this checkpoint is quantized: use the float checkpoint it came from"
              if any("quantized" in w for _, w in found) else
              "an encoder's weights are real floating-point tensors")
    raise CheckpointError(f"encoder weight {key} is {why}{more}; {advice}")


def _unusable(key: str, tensor: torch.Tensor) -> str | None:
    dtype = str(tensor.dtype).removeprefix("torch.")
    if tensor.is_quantized:
        return f"quantized ({dtype})"
    if tensor.is_meta:
        return f"a meta tensor ({dtype}, shape {list(tensor.shape)}): it holds no data"
    if tensor.is_complex():
        return f"complex ({dtype})"
    if tensor.is_floating_point():
        return None
    if dtype in ("int8", "uint8", "int4", "uint4"):
        return f"{dtype} (quantized)"
    if tensor.dtype != torch.bool and key.endswith(("position_ids", "token_type_ids")):
        return None
    return f"{dtype}, not floating-point"
