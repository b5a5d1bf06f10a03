"""What a whole pickled model holds besides its weights: its configs, and quantized modules.

`torch.save(model)` keeps the module tree, and each `config` object in it, in one pickle;
loaded or read as inert stand-ins, the tree is walked breadth first, each object once (a
pickle may link a module to its own parent), with bounds on how many and how deep.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from .safe_unpickle import StandIn

MAX_DEPTH = 4  # nested mappings followed, here and when searching for the state dict

_QUANTIZED_MODULES = ("torch.ao.nn.quantized.dynamic.", "torch.nn.quantized.dynamic.")
_PACKED = "_packed_params._packed_params"  # quantize_dynamic's Linear: (int8 weight, bias)
_MAX_MODULES = 100_000  # a pickled model's modules, walked once each (a pickle may loop)
_MAX_CONFIGS = 16


def dynamically_quantized(obj: Any) -> str | None:
    """Where `obj` holds `quantize_dynamic`'s packed weights (a state-dict key, or a
    quantized module of a pickled model, loaded or stand-in), else None."""
    for where, item in _walk(obj, modules_only=False):
        if _is_module(item):
            name = (item.pickled_name if isinstance(item, StandIn)
                    else f"{type(item).__module__}.{type(item).__qualname__}")
            if name.startswith(_QUANTIZED_MODULES):
                return f"{where} ({name})"
        elif isinstance(item, Mapping):
            packed = next((k for k in item if isinstance(k, str) and k.endswith(_PACKED)), None)
            if packed is not None:
                return packed
    return None


def module_configs(obj: Any) -> dict[str, Any]:
    """The `config` objects a pickled model and its submodules hold (`model.config`,
    `model.bert.config`), by where they sit, each once (its shallowest place)."""
    found: dict[str, Any] = {}
    for where, module in _walk(obj, modules_only=True):
        config = module.__dict__.get("config")
        if config is not None and not _is_module(config) and all(
                c is not config for c in found.values()):
            found[f"{where}.config"] = config
            if len(found) >= _MAX_CONFIGS:
                break
    return found


def _walk(obj: Any, modules_only: bool) -> Iterator[tuple[str, Any]]:
    """Breadth first: `obj`, the modules it holds (loaded or stand-ins) at any depth, and
    (unless `modules_only`) the mappings it nests; each once, however a pickle links them."""
    queue: deque[tuple[str, Any, int]] = deque([("checkpoint", obj, 0)])
    seen: set[int] = set()
    while queue and len(seen) < _MAX_MODULES:
        where, item, depth = queue.popleft()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if _is_module(item):
            yield where, item
            children = item.__dict__.get("_modules") or {}
            queue += [(f"{where}.{name}", child, depth) for name, child in children.items()
                      if isinstance(name, str) and _is_module(child)]
        elif isinstance(item, Mapping) and depth <= MAX_DEPTH:
            if not modules_only:
                yield where, item
            queue += [(f"{where}[{key!r}]", value, depth + 1) for key, value in item.items()
                      if isinstance(key, str) and (isinstance(value, Mapping) or _is_module(value))]


def _is_module(obj: Any) -> bool:
    return isinstance(obj, torch.nn.Module) or (
        isinstance(obj, StandIn) and isinstance(obj.__dict__.get("_modules"), Mapping))
