"""Whether a config holds exactly these weights: every name and shape, the layer count, the memory.

`config_problem` returns the reason as data (None: it fits); a saved model's config is
checked against the weights beside it before anything is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from diagnostics.file_kinds import safetensors_problem

from ..errors import ArchitectureError
from .config_checks import memory_problem, one_layer
from .config_lookup import directory_config
from .encoders import build_meta, normalise
from .keys import POOLER, compare_keys
from .shape_config import layer_problem
from .state_dicts import StateDict


def config_problem(config: PretrainedConfig, state_dict: StateDict,
                   max_memory: int | None = None) -> str | None:
    """Why `config` cannot hold exactly these weights, or None.

    The layer count is the weights' before a model is built (more layers than they hold
    is refused, with the shapes of one layer compared); then every parameter the model
    builds must be in the weights with its shape (a pooler and tied copies may be
    absent), every weight must be a parameter of the model, and the whole model with
    its buffers must fit `max_memory`.
    """
    too_many = layer_problem(config, state_dict)
    try:
        model = build_meta(one_layer(config) if too_many else config)
    except Exception as exc:  # transformers validates configs in many ways of its own
        return f"transformers cannot build it: {str(exc).splitlines()[0][:160]}"
    keys = compare_keys(model.state_dict(keep_vars=True), state_dict, optional=(POOLER,))
    shapes = [f"{k} {list(got)} vs {list(want)}" for k, got, want in keys.shape_mismatches]
    problems = [too_many] if too_many else []
    if shapes:
        problems.append(f"shape mismatch {shapes[0]}" + _more(shapes))
    if too_many:  # one layer was built: its missing and unexpected names say nothing
        return "; ".join(problems)
    if keys.missing:
        problems.append(f"{len(keys.missing)} weights missing (e.g. {normalise(keys.missing[0])})")
    if keys.unexpected:
        problems.append(f"{len(keys.unexpected)} unexpected weights "
                        f"(e.g. {normalise(keys.unexpected[0])})")
    return "; ".join(problems) or memory_problem(model, max_memory)


def _more(items: list[str]) -> str:
    return f" (+{len(items) - 1} more)" if len(items) > 1 else ""


def saved_config(directory: str | Path, max_memory: int | None = None) -> PretrainedConfig:
    """The config of a saved model directory (an extractor output, for bench, graft and
    peers), checked against the weights beside it before anything is built from it.

    Raises:
        ArchitectureError: no config transformers knows, a bad value, or weights it cannot
            hold (more layers, other shapes, over the memory budget).
    """
    directory = Path(directory)
    config = directory_config(directory)
    if config is None:
        raise ArchitectureError(f"{directory / 'config.json'} holds no config transformers knows")
    weights = directory / "model.safetensors"
    if weights.is_file():
        problem = safetensors_problem(weights) or config_problem(
            config, _safetensors_shapes(weights), max_memory)
        if problem:
            raise ArchitectureError(f"{directory / 'config.json'} does not fit "
                                    f"{weights.name} beside it: {problem}")
    return config


def _safetensors_shapes(path: Path) -> dict[str, Any]:
    """Each weight's name and shape, from the header alone (nothing is read into memory)."""
    from types import SimpleNamespace

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {k: SimpleNamespace(shape=tuple(handle.get_slice(k).get_shape()))
                for k in handle.keys()}
