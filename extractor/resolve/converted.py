"""Checkpoints converted from TensorFlow or Paddle, read as transformers reads them.

Conversion scripts (TensorFlow's BERT, Paddle's ERNIE and UIE's `convert.py`) name
LayerNorm parameters `gamma`/`beta`; transformers' loader renames them to
`weight`/`bias` (its "legacy" rules in `conversion_mapping`), and so do we, with the
same rule read from transformers. Their configs may also lack `model_type` (UIE
writes `architectures: ["UIE"]`); such a config is used only where the weights name
one model type (ERNIE's `embeddings.task_type_embeddings` exist in no other), never
where a layout is shared (BERT or RoBERTa: position ids differ, so would the numbers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import torch

from .encoders import find_encoders

# transformers 5's legacy renames for LayerNorm, should its table be gone or moved.
_LAYER_NORM_RULES = (("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"))
# The sizes every encoder config has: a dict with all of them and no model_type is one.
_ENCODER_SIZES = ("hidden_size", "num_attention_heads", "num_hidden_layers")


@cache
def layer_norm_rules() -> tuple[tuple[re.Pattern[str], str], ...]:
    """transformers' own gamma/beta renames: (source pattern, replacement) pairs."""
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping

        renames = get_checkpoint_conversion_mapping("legacy") or []
        pairs = [(source, target) for rule in renames
                 for source, target in zip(rule.source_patterns, rule.target_patterns,
                                           strict=False)
                 if source.endswith((".gamma", ".beta")) and "LayerNorm" in source]
    except (ImportError, AttributeError, TypeError):
        pairs = []
    return tuple((re.compile(source), target) for source, target in pairs or _LAYER_NORM_RULES)


def legacy_names(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The state dict with LayerNorm `gamma`/`beta` renamed `weight`/`bias`, and how many.

    A name whose new name is already present is kept as it is: two tensors for one
    parameter is for the key comparison to report, not for us to choose between.
    """
    renamed: dict[str, str] = {}
    for key in state_dict:
        if not key.endswith(("gamma", "beta")):
            continue
        new = key
        for pattern, target in layer_norm_rules():
            new = pattern.sub(target, new)
        if new != key and new not in state_dict:
            renamed[key] = new
    if not renamed:
        return state_dict, 0
    return {renamed.get(k, k): v for k, v in state_dict.items()}, len(renamed)


def is_typeless_encoder_config(values: Mapping[str, Any]) -> bool:
    """A config with an encoder's sizes and no model type (UIE's, TensorFlow BERT's)."""
    return not values.get("model_type") and all(
        isinstance(values.get(k), int) and not isinstance(values.get(k), bool)
        for k in _ENCODER_SIZES)


def type_from_weights(state_dict: Mapping[str, Any]) -> tuple[str | None, str]:
    """The one model type the weights' names fit, or None with the reason.

    Returns:
        (model type, "") or (None, why: no encoder, or a layout several types share).
    """
    matches = [m for m in find_encoders(state_dict) if m.prefix == ""]
    if not matches:
        return None, "the weights are no encoder transformers knows"
    if len(matches[0].model_types) > 1:
        return None, (f"the weights have the {matches[0].layout}, shared by "
                      f"{', '.join(matches[0].model_types)}: add model_type to it")
    return matches[0].model_type, ""
