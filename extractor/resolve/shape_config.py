"""Build a config from tensor shapes, with the user's word for what shapes cannot tell.

Shapes give sizes (hidden, vocabulary, positions, layers, feed-forward); they
never give the number of attention heads, and not some settings that change
the numbers (DeBERTa's relative-attention types, ALBERT's shared layer count).
Which fields the shapes determine is asked of transformers, not written down:
each integer field of the type's config is doubled in turn on a meta build, and
the parameter dims that change with it are where its value is read. A field
that moves no dim and must be known is asked of the user (`--set NAME=VALUE`);
without it the build is refused. The layer count read so also bounds any given
config's (`layer_problem`): more layers than the weights hold is refused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .config_checks import HEADS, LAYERS, NOT_SIZES, new_config, one_layer
from .encoders import VARIANTS, meta_state_dict, normalise
from .state_dicts import StateDict

# Settings shapes cannot show and that change the numbers, beyond heads and layers.
_MUST_BE_GIVEN = {"deberta": ("pos_att_type",), "deberta-v2": ("pos_att_type",)}
# Settings whose defaults change the numbers: reported as assumed when not given.
_ASSUMED = ("hidden_act", "layer_norm_eps", "position_embedding_type", "pos_att_type",
            "relative_attention", "max_relative_positions", "share_att_key")


@dataclass
class ShapeConfig:
    """A config built from shapes: what was read, given by the user, and assumed."""

    config: PretrainedConfig
    read: dict[str, int] = field(default_factory=dict)
    given: dict[str, Any] = field(default_factory=dict)
    assumed: dict[str, Any] = field(default_factory=dict)


class MissingValues(Exception):
    """The shapes do not determine these values; the user must give them."""

    def __init__(self, missing: list[str], read: dict[str, int]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing
        self.read = read


def config_from_shapes(
    state_dict: StateDict, model_type: str, given: dict[str, Any]
) -> ShapeConfig:
    """The type's config with every size read from `state_dict` and `given` applied.

    Raises:
        MissingValues: heads (or another value shapes cannot show) was not given.
    """
    base = _closest_variant(state_dict, model_type, given)
    read: dict[str, int] = {}
    layers = read_layer_count(state_dict, base)
    if layers is not None:
        read[LAYERS] = layers
    for name in _size_fields(base):
        if name in given or name == LAYERS:
            continue
        value = _read_size(state_dict, base, name)
        if value is not None:
            read[name] = value
    missing = [n for n in (HEADS, LAYERS) if n not in given and n not in read]
    relative = getattr(base, "relative_attention", False)
    missing += [n for n in _MUST_BE_GIVEN.get(model_type, ()) if relative and n not in given]
    if missing:
        raise MissingValues(missing, read)
    config = with_values(base, {**read, **given})
    values = config.to_dict()
    assumed = {n: values[n] for n in _ASSUMED if n in values and n not in given}
    return ShapeConfig(config, read, dict(given), assumed)


def with_values(config: PretrainedConfig, values: dict[str, Any], where: str = "--set"
                ) -> PretrainedConfig:
    """A new config with `values` set the way a saved config's are (normalised on load:
    DeBERTa's `pos_att_type="p2c|c2p"` becomes a list), each checked first.

    Raises:
        ArchitectureError: a value this type of config cannot take, naming `where`.
    """
    merged = {**config.to_dict(), **values}
    for alias, name in config.attribute_map.items():  # DistilBERT: hidden_size -> dim
        if alias in values:
            merged[name] = merged.pop(alias)
    return new_config(type(config), merged, where)


def _closest_variant(
    state_dict: StateDict, model_type: str, given: dict[str, Any]
) -> PretrainedConfig:
    """The default config, or the variant (DeBERTa-v3, ...) whose parameter names fit."""
    names = {normalise(k) for k in state_dict}
    best: tuple[int, PretrainedConfig] | None = None
    for values in ({}, *VARIANTS.get(model_type, ())):
        config = new_config(CONFIG_MAPPING[model_type], {**values, **given}, "--set")
        built = {normalise(k) for k in _small_meta(config)}
        distance = len(built ^ names)
        if best is None or distance < best[0]:
            best = (distance, config)
    return best[1]


def _size_fields(config: PretrainedConfig) -> list[str]:
    values = config.to_dict()
    sizes = [k for k, v in values.items() if type(v) is int and v > 0 and not NOT_SIZES.search(k)]
    # Standard names first: hidden_size rather than DistilBERT's dim, which it maps to.
    aliases = {alias: name for name, alias in config.attribute_map.items()}
    return [aliases.get(k, k) for k in sizes]


def _small_meta(config: PretrainedConfig) -> dict[str, Any]:
    """Names and shapes with one layer where the type allows it (quicker, same names)."""
    try:
        return meta_state_dict(one_layer(config))
    except Exception:  # a type whose per-layer settings refuse one layer: build it whole
        return meta_state_dict(config)


def _read_size(state_dict: StateDict, base: PretrainedConfig, name: str) -> int | None:
    """Double `name`, see which dims follow, read the value there; None if none do."""
    value = getattr(base, name)
    doubled = copy.deepcopy(base)
    try:
        setattr(doubled, name, value * 2)
        before, after = _small_meta(base), _small_meta(doubled)
    except Exception:  # transformers refuses the doubled value: not a free size
        return None
    for key, tensor in before.items():
        if key not in after or key not in state_dict or after[key].dim() != tensor.dim():
            continue
        for axis, (old, new) in enumerate(zip(tensor.shape, after[key].shape, strict=True)):
            if new == 2 * old and old % value == 0:
                found, rest = divmod(state_dict[key].shape[axis], old // value)
                return found if rest == 0 else None
    return None


def read_layer_count(state_dict: StateDict, base: PretrainedConfig) -> int | None:
    """Count the layers under the container whose index count follows the config's."""
    if not hasattr(base, LAYERS) or hasattr(base, "block_sizes"):
        return None
    one, two = copy.deepcopy(base), copy.deepcopy(base)
    one.num_hidden_layers, two.num_hidden_layers = 1, 2
    containers = _indexed(meta_state_dict(two)).items() - _indexed(meta_state_dict(one)).items()
    grown = [c for c, count in containers if count == 2]
    if not grown:
        return None  # ALBERT: layers share weights, their number is not in the file
    return _indexed(state_dict).get(grown[0])


def layer_problem(config: PretrainedConfig, state_dict: StateDict) -> str | None:
    """Why the config's layer count cannot be these weights', or None: a config that
    declares more layers than the weights hold is refused before any is built."""
    declared = getattr(config, LAYERS, None)
    if not isinstance(declared, int):
        return None
    try:
        present = read_layer_count(state_dict, config)
    except Exception:  # transformers cannot build even two layers: the caller's build says why
        return None
    if present is not None and declared > present:
        return (f"the config declares {LAYERS}={declared} but the weights hold {present} "
                f"layer{'s' * (present != 1)}")
    return None


def _indexed(keys: Any) -> dict[str, int]:
    """For each path before a numeric component, how many indices it holds."""
    found: dict[str, set[str]] = {}
    for key in keys:
        parts = key.split(".")
        for i, part in enumerate(parts):
            if part.isdigit():
                found.setdefault(".".join(parts[:i]), set()).add(part)
                break
    return {k: len(v) for k, v in found.items()}
