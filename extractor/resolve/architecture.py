"""Resolve the encoder's configuration offline, and never ship a guessed one.

Sources, in order: `--config FILE`, `--model NAME_OR_DIR`, then every config or
model name the checkpoint's files carry (`config_sources`: a `config.json`
beside the weights and the encoder configs nested in project configs, then the
configs stored in the checkpoint). A name is looked up as a directory beside
the checkpoint, in the local Hugging Face cache, then in the table of
well-known encoders (whose tokenizer is still taken from the cache when it holds
one). Each candidate must fit the weights exactly (names and shapes); rejected
ones are listed with the reason. Only when no file carries a
config is one built from shapes, and then only with the values shapes cannot
tell (the number of attention heads, at least) given by the user with
`--set NAME=VALUE`; otherwise the run is refused. Parity later proves the
export matches this model; only the config's source can make the model right.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..errors import ArchitectureError
from .checkpoint import Checkpoint
from .config_checks import one_layer
from .config_fit import config_problem
from .config_lookup import (
    cache_location,
    candidate_config,
    config_from_model,
    config_from_values,
    read_config_file,
)
from .config_sources import Candidate, candidates, tokenizer_dir
from .converted import is_typeless_encoder_config, type_from_weights
from .encoders import build_meta, find_encoders
from .shape_config import MissingValues, config_from_shapes, with_values
from .state_dicts import StateDict


@dataclass
class ResolvedConfig:
    """The configuration chosen for the fresh model, and how it was chosen."""

    config: PretrainedConfig
    source: str  # human-readable, e.g. "checkpoint['config']['bert_model_name']='bert-large-cased'"
    kind: str  # "config-file" | "model" | "found" | "builtin" | "shapes"
    tokenizer_dir: Path | None = None
    rejected: list[str] = field(default_factory=list)  # candidates tried, with the reason
    overrides: dict[str, Any] = field(default_factory=dict)  # --set NAME=VALUE
    adjusted: list[str] = field(default_factory=list)  # read from the weights, e.g. vocab_size
    assumed: dict[str, Any] = field(default_factory=dict)  # shapes only: defaults relied on
    config_file: Path | None = None  # the file its values were read from (absolute), if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "config_file": str(self.config_file) if self.config_file else None,
            "model_type": self.config.model_type,
            "num_attention_heads": attention_heads(self.config),
            "tokenizer_dir": str(self.tokenizer_dir) if self.tokenizer_dir else None,
            "rejected": self.rejected,
            "overrides": self.overrides,
            "adjusted": self.adjusted,
            "assumed": self.assumed,
        }


def resolve_config(
    state_dict: StateDict,
    checkpoint: Checkpoint | None = None,
    config_file: str | Path | None = None,
    model: str | Path | None = None,
    cache_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    prefix: str = "",
    max_memory: int | None = None,
) -> ResolvedConfig:
    """Choose the configuration for the stripped encoder weights.

    Args:
        state_dict: the encoder's weights with the prefix already stripped.
        checkpoint: the loaded checkpoint, for the configs its files carry.
        config_file: an explicit `config.json` (must fit the weights).
        model: an explicit local model directory or Hub name in the local cache.
        cache_dir: a Hugging Face cache directory to look in (default: the usual one).
        overrides: `--set` values, applied to whichever config is chosen.
        prefix: the encoder's prefix in the checkpoint; a config nested under a key that
            shares its words (GLiNER's `labels_encoder_config`) is tried first.
        max_memory: bytes the model may take (default: `limits.default_max_memory()`); a
            config declaring a bigger one is refused before it is built.

    Raises:
        ArchitectureError: nothing fits, or only shapes are left and a value they
            cannot tell was not given.
    """
    overrides = dict(overrides or {})
    if config_file is not None:
        where = f"--config {config_file}"
        config = config_from_values(read_config_file(Path(config_file)), where)
        return _explicit(config, state_dict, f"--config {config_file}", "config-file",
                         tokenizer_dir(Path(config_file).parent), overrides, max_memory,
                         Path(config_file).resolve())
    if model is not None:
        config, tokenizers, read_from = config_from_model(str(model), cache_dir)
        if config is None:
            raise ArchitectureError(
                f"--model {model} is neither a local model directory nor in the local Hugging "
                f"Face cache ({cache_location(cache_dir)}); nothing is downloaded"
            )
        return _explicit(config, state_dict, f"--model {model}", "model", tokenizers, overrides,
                         max_memory, read_from)
    rejected: list[str] = []
    found = checkpoint and _from_candidates(state_dict, checkpoint, cache_dir, overrides,
                                            prefix, rejected, max_memory)
    if found:
        found.rejected = rejected
        return found
    return _from_shapes(state_dict, overrides, rejected, checkpoint, max_memory)


def _explicit(
    config: PretrainedConfig,
    state_dict: StateDict,
    source: str,
    kind: str,
    tokenizers: Path | None,
    overrides: dict[str, Any],
    max_memory: int | None,
    read_from: Path | None,
) -> ResolvedConfig:
    config, adjusted = _apply(config, overrides, state_dict)
    problem = config_problem(config, state_dict, max_memory)
    if problem:
        raise ArchitectureError(f"{source} does not fit the weights: {problem}")
    return ResolvedConfig(config, source, kind, tokenizers, overrides=overrides, adjusted=adjusted,
                          config_file=read_from)


def _from_candidates(
    state_dict: StateDict,
    checkpoint: Checkpoint,
    cache_dir: str | Path | None,
    overrides: dict[str, Any],
    prefix: str,
    rejected: list[str],
    max_memory: int | None,
) -> ResolvedConfig | None:
    for candidate in sorted(candidates(checkpoint), key=lambda c: not _shares_words(c, prefix)):
        if candidate.values is not None and is_typeless_encoder_config(candidate.values):
            model_type, why = type_from_weights(state_dict)
            if model_type is None:
                rejected.append(f"{candidate.where}: no model_type, and {why}")
                continue
            candidate = replace(candidate, values={**candidate.values, "model_type": model_type},
                                where=f"{candidate.where} (model_type {model_type}: the "
                                      "weights' names)")
        try:
            config, kind, source, tokenizers, read_from = candidate_config(candidate, cache_dir)
        except ArchitectureError as exc:
            text = str(exc)
            rejected.append(text if text.startswith(candidate.where) else
                            f"{candidate.where}: {text}")
            continue
        if config is None:
            rejected.append(f"{candidate.where}: {source}")
            continue
        config, adjusted = _apply(config, overrides, state_dict)
        problem = config_problem(config, state_dict, max_memory)
        if problem:
            rejected.append(f"{source}: {problem}")
            continue
        tokenizers = tokenizer_dir(checkpoint.weights_dir) or tokenizers
        return ResolvedConfig(config, source, kind, tokenizers, overrides=overrides,
                              adjusted=adjusted, config_file=read_from)
    return None


def _shares_words(candidate: Candidate, prefix: str) -> bool:
    """Whether the candidate's key names the encoder the prefix names
    (`labels_encoder_config` for `token_rep_layer.labels_encoder.model.`)."""
    generic = {"model", "encoder", "layer", "config", "json"}
    key = candidate.where.split("=")[0].lower()
    return bool(set(re.findall(r"[a-z]+", prefix.lower())) & set(re.findall(r"[a-z]+", key))
                - generic)


def _from_shapes(
    state_dict: StateDict,
    overrides: dict[str, Any],
    rejected: list[str],
    checkpoint: Checkpoint | None,
    max_memory: int | None,
) -> ResolvedConfig:
    matches = [m for m in find_encoders(state_dict) if m.prefix == ""]
    looked = "; ".join(rejected) if rejected else _nothing_found(checkpoint)
    if not matches:
        raise ArchitectureError(
            f"no config found ({looked}) and the weights are no encoder transformers knows; "
            "pass --config or --model"
        )
    types = matches[0].model_types
    model_type = overrides.pop("model_type", None) or (types[0] if len(types) == 1 else None)
    if model_type is None:
        raise ArchitectureError(
            f"no config found ({looked}); the weights have the {matches[0].layout}, shared by "
            f"{', '.join(types)}: pass --config or --model, or name the type and what shapes "
            f"cannot tell with --set model_type=...,num_attention_heads=N"
        )
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ArchitectureError(f"--set model_type={str(model_type)[:60]} is not a model type "
                                f"transformers knows (the weights fit {', '.join(types)})")
    try:
        built = config_from_shapes(state_dict, model_type, overrides)
    except MissingValues as exc:
        sizes = ", ".join(f"{k}={v}" for k, v in exc.read.items())
        raise ArchitectureError(
            f"no config found ({looked}); the {model_type} weights give {sizes} but not "
            f"{', '.join(exc.missing)}: pass --config or --model, or --set "
            + ",".join(f"{name}=..." for name in exc.missing)
        ) from None
    if not overrides:  # building from shapes is the user's call, never ours
        sizes = ", ".join(f"{k}={v}" for k, v in built.read.items())
        defaults = ", ".join(f"{k}={v}" for k, v in built.assumed.items())
        raise ArchitectureError(
            f"no config found ({looked}); the {model_type} weights give {sizes}, but no file "
            f"says the rest ({defaults} would be transformers' defaults): pass --config or "
            "--model, or --set the values you know to build from the shapes"
        )
    problem = config_problem(built.config, state_dict, max_memory)
    if problem:
        raise ArchitectureError(f"a {model_type} config built from the shapes does not fit the "
                                f"weights ({problem}); pass --config or --model")
    return ResolvedConfig(
        built.config,
        f"tensor shapes ({model_type}) with --set {', '.join(sorted(built.given))}",
        "shapes",
        rejected=rejected,
        overrides={"model_type": model_type, **overrides},
        assumed=built.assumed,
    )


def _nothing_found(checkpoint: Checkpoint | None) -> str:
    if checkpoint is None:
        return "no checkpoint files to look in"
    return f"none in {checkpoint.weights_dir} or inside the checkpoint"


def _apply(
    config: PretrainedConfig, overrides: dict[str, Any], state_dict: StateDict
) -> tuple[PretrainedConfig, list[str]]:
    """The config with `--set` values, and its vocabulary read from the weights.

    Projects add tokens after loading an encoder (GLiNER's <<ENT>>, SpanMarker's
    <start>) and resize the embeddings; the row count is in the weights, not a guess.
    """
    if overrides.get("model_type", config.model_type) != config.model_type:
        raise ArchitectureError(f"--set model_type={overrides['model_type']} contradicts the "
                                f"config's {config.model_type!r}; pass --config instead")
    config = with_values(config, overrides) if overrides else copy.deepcopy(config)
    adjusted = []
    rows = _vocab_rows(config, state_dict)
    if rows is not None and rows != config.vocab_size and "vocab_size" not in overrides:
        adjusted.append(f"vocab_size {config.vocab_size} -> {rows} (the embedding's rows)")
        config.vocab_size = rows
    return config, adjusted


def _vocab_rows(config: PretrainedConfig, state_dict: StateDict) -> int | None:
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int):
        return None
    try:  # the embeddings are outside the layers: one layer names them all
        built = build_meta(one_layer(config)).state_dict()
    except Exception:  # transformers cannot build it: config_problem says why
        return None
    tables = [
        key for key, tensor in built.items()
        if tensor.dim() == 2 and tensor.shape[0] == vocab and key in state_dict
    ]
    tables.sort(key=lambda k: ("word" not in k, "embed" not in k))
    return int(state_dict[tables[0]].shape[0]) if tables else None


def attention_heads(config: PretrainedConfig) -> int | None:
    return getattr(config, "num_attention_heads", None)
