"""Recognise transformer encoders in a state dict by asking transformers itself.

Each supported model type is built once on the meta device (no weights
allocated); its parameter names, with layer indices replaced by `#`, are its
signature. A subtree of a checkpoint is that encoder when it holds every name
the type always has and little that the type never has. Model types whose
names coincide (BERT, RoBERTa, CamemBERT, ...) form one layout: only a config
can tell them apart. Signatures are cached per transformers version.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, PretrainedConfig

from diagnostics import atomic
from diagnostics.errors import OutputFileError

from .keys import BENIGN_EXTRA, tied_names

# Encoder-style model types, most used first: the first of a shared layout names it.
ENCODER_TYPES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "ernie",
    "data2vec-text",
    "megatron-bert",
    "xlm-roberta-xl",
    "electra",
    "distilbert",
    "albert",
    "deberta",
    "deberta-v2",
    "mpnet",
    "modernbert",
    "xlm",
    "funnel",
    "longformer",
    "big_bird",
    "nystromformer",
    "roformer",
    "convbert",
    "mobilebert",
    "squeezebert",
    "rembert",
    "mra",
    "yoso",
    "fnet",
    "t5",
    "mt5",
    "umt5",
)
# Config settings that change which weights exist; their variants widen a type's signature.
VARIANTS: dict[str, tuple[dict[str, Any], ...]] = {
    "deberta": ({"relative_attention": True, "pos_att_type": ["c2p", "p2c"]},),
    "deberta-v2": (
        {  # DeBERTa-v3 and mDeBERTa
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_buckets": 256,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "position_biased_input": False,
        },
        {"relative_attention": True, "pos_att_type": ["p2c", "c2p"], "share_att_key": False},
    ),
    "electra": ({"embedding_size": 256},),  # no projection when it equals the hidden size
    "funnel": ({"architectures": ["FunnelBaseModel"]},),
    "bert": ({"position_embedding_type": "relative_key"},),
    "ernie": ({"use_task_id": True},),  # ERNIE 3.0 and UIE: task-type embeddings
}
_LAYER_INDEX = re.compile(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)")
_CACHE_VERSION = 2


@dataclass(frozen=True)
class Signature:
    """The parameter names of one model type, layer indices normalised to `#`."""

    model_type: str
    required: frozenset[str]  # in every variant (tied copies and the pooler left out)
    known: frozenset[str]  # in any variant


@dataclass(frozen=True)
class EncoderMatch:
    """A subtree of a state dict that is a transformer encoder."""

    prefix: str
    model_types: tuple[str, ...]  # every type with this layout, best known first
    score: float  # share of the subtree's names the types explain, 0..1

    @property
    def model_type(self) -> str:
        return self.model_types[0]

    @property
    def layout(self) -> str:
        """The type, or `bert layout` where several types share the parameter names."""
        return self.model_type if len(self.model_types) == 1 else f"{self.model_type} layout"


def normalise(key: str) -> str:
    """`encoder.layer.11.attention...` -> `encoder.layer.#.attention...`."""
    return _LAYER_INDEX.sub("#", key)


def encoder_class(config: PretrainedConfig) -> type:
    """The transformers class that is the bare encoder for `config`.

    `AutoModel`'s class, except for encoder-decoder types (T5 -> T5EncoderModel) and
    types with several base classes (Funnel: FunnelModel or FunnelBaseModel, chosen
    by `config.architectures`).
    """
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    names = MODEL_MAPPING_NAMES.get(config.model_type)
    if names is None:
        raise ValueError(f"transformers has no base model for model type {config.model_type!r}")
    if isinstance(names, (tuple, list)):
        wanted = set(getattr(config, "architectures", None) or ())
        names = next((n for n in names if n in wanted), names[0])
    encoder_only = names.replace("Model", "EncoderModel")  # T5Model -> T5EncoderModel
    if hasattr(transformers, encoder_only):
        names = encoder_only
    return getattr(transformers, names)


def build_meta(config: PretrainedConfig, **kwargs: Any) -> torch.nn.Module:
    """The encoder for `config` on the meta device: names and shapes, no memory."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return encoder_class(config)(config, **kwargs)


def meta_state_dict(config: PretrainedConfig, **kwargs: Any) -> dict[str, torch.Tensor]:
    return build_meta(config, **kwargs).state_dict()


def signature(model_type: str) -> Signature:
    return signatures()[model_type]


def signatures() -> dict[str, Signature]:
    """Every supported type's signature (computed once per transformers version)."""
    return dict(_signatures(_cache_file()))


@lru_cache(maxsize=2)
def _signatures(cache: Path | None) -> tuple[tuple[str, Signature], ...]:
    stored = _read_cache(cache)
    if stored is not None:
        return stored
    computed = tuple((t, _compute_signature(t)) for t in ENCODER_TYPES)
    _write_cache(cache, computed)
    return computed


def _compute_signature(model_type: str) -> Signature:
    required: set[str] | None = None
    known: set[str] = set()
    for values in ({}, *VARIANTS.get(model_type, ())):
        config = small_config(model_type, **values)
        model = build_meta(config)
        names = model.state_dict(keep_vars=True)
        tied = tied_names(names)
        normalised = {normalise(n) for n in names} - set(BENIGN_EXTRA)
        always = {normalise(n) for n in names if n not in tied and not n.startswith("pooler")}
        always -= set(BENIGN_EXTRA)
        known |= normalised
        required = always if required is None else required & always
    return Signature(model_type, frozenset(required or ()), frozenset(known))


def small_config(model_type: str, **values: Any) -> PretrainedConfig:
    """The type's default config with two layers: the names are the same, the build is quick."""
    config = AutoConfig.for_model(model_type, **values)
    if model_type == "funnel":
        config.block_sizes = [1, 1]
    else:
        config.num_hidden_layers = 2
    return config


def _cache_file() -> Path | None:
    root = os.environ.get("SUBGRAFT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "subgraft"
    )
    name = f"encoder-signatures-{_CACHE_VERSION}-transformers-{transformers.__version__}.json"
    return Path(root) / name


def _read_cache(cache: Path | None) -> tuple[tuple[str, Signature], ...] | None:
    try:
        data = json.loads(cache.read_text()) if cache else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or list(data) != list(ENCODER_TYPES):
        return None
    return tuple(
        (t, Signature(t, frozenset(v["required"]), frozenset(v["known"]))) for t, v in data.items()
    )


def _write_cache(cache: Path | None, computed: Iterable[tuple[str, Signature]]) -> None:
    if cache is None:
        return
    data = {t: {"required": sorted(s.required), "known": sorted(s.known)} for t, s in computed}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(cache, json.dumps(data).encode())
    except (OSError, OutputFileError):
        pass  # a read-only home only costs the next run the second it takes to rebuild


def find_encoders(keys: Iterable[str]) -> list[EncoderMatch]:
    """Every prefix under which a supported encoder's parameters sit, at any depth."""
    keys = list(keys)
    sigs = signatures()
    anchors = {t: _anchor(s) for t, s in sigs.items()}
    candidates: set[str] = set()
    for key in keys:
        parts = key.split(".")
        normalised = normalise(key)
        for anchor in anchors.values():
            if normalised == anchor or normalised.endswith("." + anchor):
                candidates.add(".".join(parts[: len(parts) - anchor.count(".") - 1]) + ".")
    found = []
    for prefix in sorted(candidates):
        prefix = "" if prefix == "." else prefix
        match = match_subtree(
            {normalise(k[len(prefix) :]) for k in keys if k.startswith(prefix)}, prefix, sigs
        )
        if match is not None:
            found.append(match)
    return found


def match_subtree(
    names: set[str], prefix: str = "", sigs: Mapping[str, Signature] | None = None
) -> EncoderMatch | None:
    """The types whose signature these normalised names fit best, or None."""
    names = names - set(BENIGN_EXTRA)
    scored = []
    for model_type, sig in (sigs or signatures()).items():
        if sig.required <= names:
            score = len(names & sig.known) / len(names | sig.required)
            if score >= 0.5:
                scored.append((score, model_type))
    if not scored:
        return None
    best = max(score for score, _ in scored)
    types = tuple(t for t in ENCODER_TYPES if (best, t) in scored)
    return EncoderMatch(prefix, types, round(best, 3))


def _anchor(sig: Signature) -> str:
    """A name every such encoder has, preferring one inside a layer (the rarest kind)."""
    inside = sorted(n for n in sig.required if "#" in n)
    return (inside or sorted(sig.required))[0]
