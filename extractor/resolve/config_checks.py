"""Check a config's values before anything is built from them.

A config is the word of a file or a flag: zero heads, `"twelve"` heads, 100,000
layers, an activation named `os.system` or a dtype that is no dtype make
transformers divide by zero, build for an hour or fail deep inside. Every config
made from outside values is made by `new_config`, which checks each value against
what transformers' own config class says first: the type of its default, a size
that is positive, a hidden size the heads divide, an activation in ACT2FN, a real
torch dtype. The memory budget then decides what a model may hold
(`memory_problem`); the weights decide the layer count (`shape_config.layer_problem`).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
import reprlib
from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from transformers import PretrainedConfig
from transformers.activations import ACT2FN

from diagnostics import limits

from ..errors import ArchitectureError

# The sizes every encoder has (under transformers' standard names); each must be positive.
SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "vocab_size", "max_position_embeddings")
HEADS, LAYERS = "num_attention_heads", "num_hidden_layers"
# No dimension of a model is this large; past it a meta build's arithmetic overflows.
MAX_SIZE = 2**31 - 1
# Integer fields that are ids or switches, not sizes (they may be negative).
NOT_SIZES = re.compile(r"_id$|_index$|^chunk_size_feed_forward$|^n_langs$|^num_labels$")
_DTYPE_KEYS = ("dtype", "torch_dtype")
# Fields by which a type sizes its heads apart from hidden_size (T5's d_kv, Funnel's d_head);
# with `embedding_size` transformers' own attention skips the divisibility check (ALBERT).
_OWN_HEAD_SIZE = ("head_dim", "attention_head_size", "d_kv", "d_head", "dim_head",
                  "embedding_size")


def new_config(config_class: type[PretrainedConfig], values: Mapping[str, Any], where: str
               ) -> PretrainedConfig:
    """`config_class` with `values`, refused in one line when a value cannot be its.

    Raises:
        ArchitectureError: naming `where` (the file or flag), the field, what it must be
            and what it is.
    """
    problem = values_problem(config_class, values)
    if problem:
        raise ArchitectureError(f"{where}: {problem}")
    try:
        return config_class.from_dict(dict(values))
    except Exception as exc:  # transformers validates configs in many ways of its own
        # Its strict-dataclass errors put the reason on the second line: keep both.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = " ".join(lines[:2])[:200] or type(exc).__name__
        raise ArchitectureError(f"{where}: not a valid {config_class.model_type} config: "
                                f"{reason}") from None


def values_problem(config_class: type[PretrainedConfig], values: Mapping[str, Any]
                   ) -> str | None:
    """Why `values` cannot configure `config_class`, or None (each value is checked against
    the type of the class's default for it; fields without a default are left to transformers)."""
    defaults = _defaults(config_class)
    aliases = config_class.attribute_map  # standard name -> the class's own (DistilBERT's dim)
    standard = {own: name for name, own in aliases.items()}
    for key, value in values.items():
        if not isinstance(key, str) or key.startswith("__"):
            return f"{_shown(key)} is a key, expected a config field name"
        shown = key if key.isidentifier() else _shown(key)
        own = aliases.get(key, key)
        name = standard.get(own, own)
        if own in _DTYPE_KEYS:
            problem = _dtype_problem(value)
        elif own not in defaults:
            if _is_machinery(config_class, own):
                return (f"{shown} is {_shown(value)}, expected a config field, not one of the "
                        "config class's own methods")
            continue
        else:
            problem = _value_problem(name, value, defaults[own],
                                     _annotations(config_class).get(own, type(defaults[own])))
        if problem:
            return f"{shown} is {_shown(value)}, {problem}"
    merged = {**defaults, **{aliases.get(k, k): v for k, v in values.items()}}
    return _heads_problem(config_class, merged) or _token_id_problem(
        {k: v for k, v in values.items() if isinstance(k, str)}, merged.get("vocab_size"))


def _token_id_problem(values: Mapping[str, Any], vocab: Any) -> str | None:
    """The padding id must be a row of the vocabulary: embeddings index it (RoBERTa's
    positions, padded inputs) and fail past it. Other special ids only warn in
    transformers, and real configs carry them past a shrunk vocabulary."""
    value = values.get("pad_token_id")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or not isinstance(value, int) \
            or isinstance(value, bool) or 0 <= value < vocab:
        return None
    return f"pad_token_id is {_shown(value)}, expected a token id from 0 to {vocab - 1}"


def _is_machinery(config_class: type[PretrainedConfig], name: str) -> bool:
    """A method or table of the class (`to_dict`, `attribute_map`): a value there would
    replace what the config runs on. Properties and plain constants take values."""
    try:
        found = inspect.getattr_static(config_class, name)
    except AttributeError:
        return False
    return not isinstance(found, (property, str, int, float, bool, type(None)))


def _value_problem(name: str, value: Any, default: Any, annotation: Any) -> str | None:
    """The default's type is the rule where the field is declared as that type alone; a
    union (Longformer's `list[int] | int`) is left to transformers, but an integer there
    is still a size."""
    plain = annotation is type(default)
    if value is None:
        return "expected a size, not null" if name in SIZES else None
    if isinstance(default, bool):
        return None if isinstance(value, bool) or not plain else "expected true or false"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected a whole number" if plain or name in SIZES else None
        if NOT_SIZES.search(name):
            return None
        if value > MAX_SIZE:
            return f"expected a size of at most {MAX_SIZE:,}"
        if name in SIZES and value < 1:
            return "expected a positive size"
        if value < 0 and default >= 0:
            return "expected a size of 0 or more"
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "expected a number" if plain else None
        if not math.isfinite(value):
            return "expected a finite number"
        if value < 0 <= default:  # a negative std, epsilon or dropout breaks the build
            return "expected a number of 0 or more"
        if ("dropout" in name or name.endswith("_prob")) and value > 1:
            return "expected a probability from 0 to 1"
        return None
    if isinstance(default, str):
        if not isinstance(value, str):
            return "expected text" if plain else None
        if name.endswith(("_act", "activation")) and default in ACT2FN and value not in ACT2FN:
            return f"expected an activation transformers has ({_activations()})"
    return None


def _heads_problem(config_class: type[PretrainedConfig], merged: dict[str, Any]) -> str | None:
    own = config_class.attribute_map
    hidden, heads = merged.get(own.get("hidden_size", "hidden_size")), merged.get(
        own.get(HEADS, HEADS))
    if any(name in merged for name in _OWN_HEAD_SIZE):
        return None  # the type sizes its heads itself, or (as transformers does) may not split
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
        return (f"hidden_size={hidden} is not a multiple of num_attention_heads={heads} "
                "(each head takes an equal share)")
    return None


def _dtype_problem(value: Any) -> str | None:
    if value is None:
        return None
    name = value.removeprefix("torch.") if isinstance(value, str) else None
    if name and isinstance(getattr(torch, name, None), torch.dtype):
        return None
    return "expected the name of a torch dtype (e.g. float32, float16, bfloat16)"


def _activations() -> str:
    names = sorted(ACT2FN)
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


@cache
def _annotations(config_class: type[PretrainedConfig]) -> dict[str, Any]:
    """Each field's declared type (a class, or a union or text for anything wider)."""
    try:
        return {f.name: f.type for f in dataclasses.fields(config_class)}
    except TypeError:  # not a dataclass: the defaults' types are all there is
        return {}


@cache
def _defaults(config_class: type[PretrainedConfig]) -> dict[str, Any]:
    try:
        return config_class().to_dict()
    except Exception:  # a class without defaults: transformers' own checks are all there is
        return {}


def _shown(value: Any) -> str:
    text = reprlib.repr(value)  # bounded however long or deep the value is
    return text if len(text) <= 60 else text[:57] + "..."


def memory_problem(model: torch.nn.Module, budget: int | None = None) -> str | None:
    """Why the model built (on the meta device) from a config would not fit the memory
    budget, or None: its parameters and buffers, counted once each."""
    seen = {id(t): t for t in (*model.parameters(), *model.buffers())}
    nbytes = sum(limits.product(t.shape) * t.element_size() for t in seen.values())
    config = getattr(model, "config", None)
    what = f"a {getattr(config, 'model_type', 'model')} model of this config"
    return limits.too_large(what, nbytes, budget)


def one_layer(config: PretrainedConfig) -> PretrainedConfig:
    """A copy with one layer where the type allows it: the same parameter names outside
    the layers, a build that costs nothing whatever the config declares."""
    small = copy.deepcopy(config)
    try:
        small.num_hidden_layers = 1
        if isinstance(getattr(small, "attention_window", None), list):  # Longformer: per layer
            small.attention_window = small.attention_window[:1]
    except Exception:  # Funnel: its layers are block_sizes
        if isinstance(getattr(small, "block_sizes", None), list):
            small.block_sizes = [1] * len(small.block_sizes)
    return small
