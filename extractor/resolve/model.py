"""Build a fresh encoder from its config and load the stripped weights.

Every missing key, unexpected key and shape mismatch is collected and reported
at once (`keys.compare_keys`, the comparison choosing a config makes too), before
anything real is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel

from diagnostics.errors import first_line

from ..errors import ArchitectureError, WeightMismatchError
from .encoders import build_meta, encoder_class
from .keys import POOLER, KeyReport, compare_keys
from .state_dicts import StateDict, refuse_unusable


def build_model(
    config: PretrainedConfig,
    state_dict: StateDict,
    attn_implementation: str | None = None,
    pooler: bool = True,
) -> tuple[PreTrainedModel, KeyReport]:
    """A fresh model from `config` holding exactly the given weights, in eval mode.

    The weights are assigned, not copied, so memory-mapped checkpoint tensors stay
    shared. Floating-point weights are converted to float32 for a CPU export.
    `pooler=False` builds the model without its pooler and leaves the checkpoint's
    pooler weights out (listed as tolerated), for users who need only the tokens.

    Raises:
        CheckpointError: a weight no model can take (meta, quantized, complex, integer).
        WeightMismatchError: with every missing, unexpected and mis-shaped key.
    """
    refuse_unusable(state_dict)  # extract() asks first, for callers of this alone
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    expected = build_meta(config, **kwargs).state_dict(keep_vars=True)
    tolerated = []
    if _has_pooler(expected) and not (pooler and _has_pooler(state_dict)):
        # Many task models build the encoder without its pooler (add_pooling_layer=False).
        kwargs["add_pooling_layer"] = False
        expected = {k: v for k, v in expected.items() if not k.startswith(POOLER)}
        if _has_pooler(state_dict):
            dropped = [k for k in state_dict if k.startswith(POOLER)]
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(POOLER)}
            tolerated.append(("pooler.*", f"{len(dropped)} tensors left out (no pooler asked for)"))
        else:
            tolerated.append(("pooler.*", "not in the checkpoint; model built without pooler"))
    report = compare_keys(expected, state_dict)
    report.tolerated[:0] = tolerated
    if not report.ok:
        raise WeightMismatchError(_mismatch_message(report), report)

    weights = {k: t for k, t in state_dict.items() if k in expected}
    weights, report.converted_dtype = _as_float32(weights)
    try:
        model = encoder_class(config)(config, **kwargs)
    except (RuntimeError, ValueError, TypeError, ArithmeticError) as exc:
        # The meta build passed: what fails now is a value only a real build reads.
        reason = first_line(exc)
        raise ArchitectureError(f"transformers cannot build a {config.model_type} from this "
                                f"config: {reason}") from None
    # Tied copies (T5's encoder.embed_tokens and shared) load through the one present.
    absent = {k for k in expected if k not in weights}
    result = model.load_state_dict(weights, strict=False, assign=True)
    if set(result.missing_keys) - absent or result.unexpected_keys:
        raise WeightMismatchError(f"weights do not load: {result}", report)
    if absent:
        model.tie_weights()
    report.loaded = len(weights)
    return model.eval(), report


def load_saved_model(model_dir: str | Path) -> PreTrainedModel:
    """A saved Hugging Face model, offline, in eval mode, without a pooler its weights lack.

    `from_pretrained` would give a model saved without its pooler a randomly
    initialised one (there is no config field for it); that pooler is dropped.
    """
    from transformers.utils import logging as hf_logging

    from .config_fit import saved_config

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would call the missing pooler a problem
    try:
        config = saved_config(model_dir)  # checked against its weights before the build
        model, info = encoder_class(config).from_pretrained(
            model_dir, config=config, local_files_only=True, output_loading_info=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if getattr(model, "pooler", None) is not None and any(
        k.startswith("pooler.") for k in info["missing_keys"]
    ):
        model.pooler = None
    return model.eval()


def _has_pooler(state_dict: dict[str, Any]) -> bool:
    return any(k.startswith(POOLER) for k in state_dict)


def _as_float32(weights: StateDict) -> tuple[StateDict, str | None]:
    dtypes = {t.dtype for t in weights.values() if t.is_floating_point()}
    if dtypes <= {torch.float32}:
        return weights, None
    converted = {k: t.float() if t.is_floating_point() else t for k, t in weights.items()}
    names = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
    return converted, f"{names} -> float32"


def _mismatch_message(report: KeyReport) -> str:
    parts = []
    for label, items in (
        ("missing", report.missing),
        ("unexpected", report.unexpected),
        ("mis-shaped", [k for k, _, _ in report.shape_mismatches]),
    ):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {items[0]})")
    return "weights do not fit the model: " + ", ".join(parts)
