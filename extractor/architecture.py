"""Resolve the encoder's configuration offline, never touching a model hub.

Sources are tried in order: `--config FILE`, `--model NAME_OR_DIR` (a local
directory or a name in the local Hugging Face cache), a name or config embedded
in the checkpoint, a built-in table of well-known encoders, and last inference
from tensor shapes. A candidate that disagrees with the weights' shapes is
rejected with the reason; the number of attention heads cannot be read from
shapes, so an inferred config says it guessed them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig

from .checkpoint import Checkpoint, StateDict
from .errors import ArchitectureError
from .prefixes import guess_model_type

# Keys a config dict inside a checkpoint uses to name its encoder (OneIE: bert_model_name).
_NAME_KEYS = (
    "bert_model_name",
    "model_name_or_path",
    "pretrained_model_name_or_path",
    "model_name",
    "encoder_name",
    "transformer_name",
    "pretrained_model",
)
_CONFIG_CONTAINERS = ("config", "hyper_parameters", "hparams", "args", "cfg")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
)

_BERT_BASE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
)
_BERT_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
)
_ROBERTA = dict(
    max_position_embeddings=514,
    type_vocab_size=1,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
)
_DISTILBERT = dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
# Well-known encoders: name -> (model_type, config values). Checked against shapes before use.
BUILTIN_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "bert-base-uncased": ("bert", {**_BERT_BASE, "vocab_size": 30522}),
    "bert-base-cased": ("bert", {**_BERT_BASE, "vocab_size": 28996}),
    "bert-large-uncased": ("bert", {**_BERT_LARGE, "vocab_size": 30522}),
    "bert-large-cased": ("bert", {**_BERT_LARGE, "vocab_size": 28996}),
    "bert-base-multilingual-cased": ("bert", {**_BERT_BASE, "vocab_size": 119547}),
    "bert-base-chinese": ("bert", {**_BERT_BASE, "vocab_size": 21128}),
    "allenai/scibert_scivocab_uncased": ("bert", {**_BERT_BASE, "vocab_size": 31090}),
    "sentence-transformers/all-MiniLM-L6-v2": (
        "bert",
        dict(
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            vocab_size=30522,
        ),
    ),
    "roberta-base": ("roberta", {**_BERT_BASE, **_ROBERTA, "vocab_size": 50265}),
    "roberta-large": ("roberta", {**_BERT_LARGE, **_ROBERTA, "vocab_size": 50265}),
    "xlm-roberta-base": ("xlm-roberta", {**_BERT_BASE, **_ROBERTA, "vocab_size": 250002}),
    "xlm-roberta-large": ("xlm-roberta", {**_BERT_LARGE, **_ROBERTA, "vocab_size": 250002}),
    "distilbert-base-uncased": ("distilbert", {**_DISTILBERT, "vocab_size": 30522}),
    "distilbert-base-cased": ("distilbert", {**_DISTILBERT, "vocab_size": 28996}),
    "google/electra-small-discriminator": (
        "electra",
        dict(
            embedding_size=128,
            hidden_size=256,
            num_hidden_layers=12,
            num_attention_heads=4,
            intermediate_size=1024,
            vocab_size=30522,
        ),
    ),
    "google/electra-base-discriminator": (
        "electra",
        {**_BERT_BASE, "embedding_size": 768, "vocab_size": 30522},
    ),
    "google/electra-large-discriminator": (
        "electra",
        {**_BERT_LARGE, "embedding_size": 1024, "vocab_size": 30522},
    ),
}
# Hub organisations the classic names moved under; a name matches with or without them.
_HUB_ORGS = ("google-bert/", "FacebookAI/", "distilbert/", "google/", "sentence-transformers/")


@dataclass
class ResolvedConfig:
    """The configuration chosen for the fresh model, and how it was chosen."""

    config: PretrainedConfig
    source: str  # human-readable, e.g. "checkpoint config bert_model_name='bert-large-cased'"
    kind: str  # "config-file" | "model" | "embedded" | "builtin" | "inferred"
    heads_guessed: bool = False
    tokenizer_dir: Path | None = None
    rejected: list[str] = field(default_factory=list)  # candidates tried, with the reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "model_type": self.config.model_type,
            "heads_guessed": self.heads_guessed,
            "tokenizer_dir": str(self.tokenizer_dir) if self.tokenizer_dir else None,
            "rejected": self.rejected,
        }


def resolve_config(
    state_dict: StateDict,
    checkpoint: Checkpoint | None = None,
    config_file: str | Path | None = None,
    model: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> ResolvedConfig:
    """Choose a configuration for the stripped encoder weights.

    Args:
        state_dict: the encoder's weights with the prefix already stripped.
        checkpoint: the loaded checkpoint, for configs or names embedded in it.
        config_file: an explicit `config.json` (must fit the weights).
        model: an explicit local model directory or Hub name in the local cache.
        cache_dir: a Hugging Face cache directory to look in (default: the usual one).
    """
    rejected: list[str] = []
    if config_file is not None:
        return _explicit(
            _config_from_file(Path(config_file)),
            state_dict,
            "config-file",
            f"--config {config_file}",
            _tokenizer_dir(Path(config_file).parent),
        )
    if model is not None:
        config, tokenizer_dir = _config_from_model(str(model), cache_dir)
        if config is None:
            raise ArchitectureError(
                f"--model {model} is neither a local model directory nor in the local Hugging "
                f"Face cache ({_cache_location(cache_dir)}); nothing is downloaded"
            )
        return _explicit(config, state_dict, "model", f"--model {model}", tokenizer_dir)
    found = (
        (_from_checkpoint(state_dict, checkpoint, cache_dir, rejected) if checkpoint else None)
        or _from_builtin_shapes(state_dict, rejected)
        or infer_config(state_dict)
    )
    found.rejected = rejected
    return found


def _explicit(
    config: PretrainedConfig,
    state_dict: StateDict,
    kind: str,
    source: str,
    tokenizer_dir: Path | None,
) -> ResolvedConfig:
    problem = config_problem(config, state_dict)
    if problem:
        raise ArchitectureError(f"{source} does not fit the weights: {problem}")
    return ResolvedConfig(config, source, kind, tokenizer_dir=tokenizer_dir)


def _config_from_file(path: Path) -> PretrainedConfig:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArchitectureError(f"--config {path} is not a readable JSON file: {exc}") from None
    if not isinstance(values, dict) or "model_type" not in values:
        raise ArchitectureError(f"--config {path} has no 'model_type' (not a model config?)")
    return _for_model(values.pop("model_type"), values, str(path))


def _for_model(model_type: str, values: dict[str, Any], where: str) -> PretrainedConfig:
    try:
        return AutoConfig.for_model(model_type, **values)
    except (ValueError, KeyError) as exc:
        raise ArchitectureError(f"{where}: unsupported model type {model_type!r}: {exc}") from None


def _config_from_model(
    name: str, cache_dir: str | Path | None, base_dir: Path | None = None
) -> tuple[PretrainedConfig | None, Path | None]:
    """Config (and tokenizer directory) from a local directory or the local HF cache."""
    for directory in _local_dirs(name, base_dir):
        if (directory / "config.json").is_file():
            return AutoConfig.from_pretrained(directory, local_files_only=True), _tokenizer_dir(
                directory
            )
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is None:
        return None, None
    for hub_name in _hub_aliases(name):
        snapshot = _cached_snapshot(hub_name, cache_dir)
        if snapshot is not None:
            config = AutoConfig.from_pretrained(snapshot, local_files_only=True)
            return config, _tokenizer_dir(snapshot)
    return None, None


def _local_dirs(name: str, base_dir: Path | None) -> list[Path]:
    path = Path(name).expanduser()
    dirs = [path]
    if base_dir is not None and not path.is_absolute():
        dirs.insert(0, base_dir / path)
    return [d for d in dirs if d.is_dir()]


def _hub_aliases(name: str) -> list[str]:
    bare = name.split("/", 1)[1] if name.startswith(_HUB_ORGS) else name
    if "/" in bare:  # an organisation of its own: no aliases
        return [name]
    return list(dict.fromkeys([name, bare, *(org + bare for org in _HUB_ORGS)]))


def _cached_snapshot(name: str, cache_dir: str | Path | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir)
    return Path(found).parent if isinstance(found, str) else None


def _cache_location(cache_dir: str | Path | None) -> str:
    from huggingface_hub import constants

    return str(cache_dir or constants.HF_HUB_CACHE)


def _tokenizer_dir(directory: Path) -> Path | None:
    return directory if any((directory / f).is_file() for f in TOKENIZER_FILES) else None


def _from_checkpoint(
    state_dict: StateDict, checkpoint: Checkpoint, cache_dir: str | Path | None, rejected: list[str]
) -> ResolvedConfig | None:
    """A config file beside the weights, or a name/config dict stored in the checkpoint."""
    base_dir = checkpoint.path if checkpoint.path.is_dir() else checkpoint.path.parent
    if "config.json" in checkpoint.extra:
        config = AutoConfig.from_pretrained(base_dir, local_files_only=True)
        source = f"{base_dir / 'config.json'}"
        problem = config_problem(config, state_dict)
        if not problem:
            return ResolvedConfig(
                config, source, "embedded", tokenizer_dir=_tokenizer_dir(base_dir)
            )
        rejected.append(f"{source}: {problem}")
    for where, container in _config_containers(checkpoint.extra):
        if isinstance(container.get("model_type"), str) and "hidden_size" in container:
            values = dict(container)
            config = _for_model(values.pop("model_type"), values, where)
            problem = config_problem(config, state_dict)
            if not problem:
                return ResolvedConfig(config, f"{where} (a full config)", "embedded")
            rejected.append(f"{where}: {problem}")
        for key in _NAME_KEYS:
            name = container.get(key)
            if isinstance(name, str) and name:
                cache = container.get("bert_cache_dir") or cache_dir
                found = _from_name(
                    name, f"{where}[{key!r}]={name!r}", state_dict, base_dir, cache, rejected
                )
                if found is not None:
                    return found
    return None


def _config_containers(extra: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [
        (f"checkpoint[{k!r}]", v)
        for k, v in extra.items()
        if k in _CONFIG_CONTAINERS and isinstance(v, dict)
    ]
    return found + [("checkpoint", extra)]


def _from_name(
    name: str,
    where: str,
    state_dict: StateDict,
    base_dir: Path,
    cache_dir: str | Path | None,
    rejected: list[str],
) -> ResolvedConfig | None:
    config, tokenizer_dir = _config_from_model(name, cache_dir, base_dir)
    if config is not None:
        problem = config_problem(config, state_dict)
        if not problem:
            return ResolvedConfig(config, where, "embedded", tokenizer_dir=tokenizer_dir)
        rejected.append(f"{where} (local files): {problem}")
    builtin = builtin_config(name)
    if builtin is not None:
        problem = config_problem(builtin, state_dict)
        if not problem:
            return ResolvedConfig(builtin, f"{where}, built-in table", "builtin")
        rejected.append(f"{where} (built-in table): {problem}")
    elif config is None:
        rejected.append(
            f"{where}: not a local directory, not in the local Hugging Face cache, "
            "not in the built-in table"
        )
    return None


def builtin_config(name: str) -> PretrainedConfig | None:
    for alias in _hub_aliases(name):
        if alias in BUILTIN_CONFIGS:
            model_type, values = BUILTIN_CONFIGS[alias]
            return AutoConfig.for_model(model_type, **values)
    return None


def _from_builtin_shapes(state_dict: StateDict, rejected: list[str]) -> ResolvedConfig | None:
    """A built-in entry whose shapes match exactly (its head count is then known)."""
    fits = [
        name for name in BUILTIN_CONFIGS if not config_problem(builtin_config(name), state_dict)
    ]
    if len(fits) == 1:
        return ResolvedConfig(
            builtin_config(fits[0]), f"built-in table: {fits[0]} (matched by shapes)", "builtin"
        )
    if len(fits) > 1:
        rejected.append(f"built-in table: several entries fit the shapes ({', '.join(fits)})")
    return None


def config_problem(config: PretrainedConfig, state_dict: StateDict) -> str | None:
    """Why `config` cannot hold these weights (shape or layer mismatches), or None."""
    words = state_dict.get("embeddings.word_embeddings.weight")
    if words is not None:  # cheap first look before building a meta model
        width = next(
            (
                getattr(config, a)
                for a in ("embedding_size", "hidden_size", "dim")
                if isinstance(getattr(config, a, None), int)
            ),
            None,
        )
        wanted = (getattr(config, "vocab_size", None), width)
        if tuple(words.shape) != wanted:
            return (
                f"shape mismatch embeddings.word_embeddings.weight {tuple(words.shape)} vs {wanted}"
            )
    with torch.device("meta"):
        expected = AutoModel.from_config(config).state_dict()
    bad_shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if bad_shapes:
        more = f" (+{len(bad_shapes) - 1} more)" if len(bad_shapes) > 1 else ""
        return f"shape mismatch {bad_shapes[0]}{more}"
    common = len(expected.keys() & state_dict.keys())
    if common < 0.5 * len(expected):
        return f"only {common} of {len(expected)} expected weights present (another architecture?)"
    layers = _layer_count(state_dict.keys())
    if layers and layers != _layer_count(expected.keys()):
        return f"weights have {layers} layers, config has {_layer_count(expected.keys())}"
    return None


def _layer_count(keys: Any) -> int:
    numbers = {int(m.group(1)) for k in keys if (m := re.search(r"\blayer\.(\d+)\.", k))}
    return max(numbers) + 1 if numbers else 0


def infer_config(state_dict: StateDict) -> ResolvedConfig:
    """Build a config from tensor shapes alone; the head count is a guess."""
    model_type = guess_model_type(state_dict, "")
    if model_type is None:
        raise ArchitectureError(
            "cannot infer the architecture from these weights (not a BERT, RoBERTa, "
            "XLM-RoBERTa, ELECTRA or DistilBERT layout); pass --config or --model"
        )
    vocab, embedding = state_dict["embeddings.word_embeddings.weight"].shape
    positions = state_dict["embeddings.position_embeddings.weight"].shape[0]
    layers = _layer_count(state_dict.keys())
    if model_type == "distilbert":
        hidden = embedding
        intermediate = state_dict["transformer.layer.0.ffn.lin1.weight"].shape[0]
        heads = guess_heads(hidden)
        values = dict(
            vocab_size=vocab,
            dim=hidden,
            n_layers=layers,
            n_heads=heads,
            hidden_dim=intermediate,
            max_position_embeddings=positions,
        )
    else:
        hidden = (
            state_dict["embeddings_project.weight"].shape[0]
            if "embeddings_project.weight" in state_dict
            else embedding
        )
        intermediate = state_dict["encoder.layer.0.intermediate.dense.weight"].shape[0]
        types = state_dict.get("embeddings.token_type_embeddings.weight")
        heads = guess_heads(hidden)
        values = dict(
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            max_position_embeddings=positions,
            type_vocab_size=types.shape[0] if types is not None else 2,
        )
        if model_type == "electra":
            values["embedding_size"] = embedding
        if model_type in ("roberta", "xlm-roberta"):
            values.update(pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    config = AutoConfig.for_model(model_type, **values)
    problem = config_problem(config, state_dict)
    if problem:
        raise ArchitectureError(f"inferred {model_type} config does not fit the weights: {problem}")
    return ResolvedConfig(
        config,
        f"inferred from tensor shapes ({model_type}, {heads} attention heads GUESSED)",
        "inferred",
        heads_guessed=True,
    )


def guess_heads(hidden: int) -> int:
    """The usual head count for a hidden size: head size 64 where it divides, else smaller."""
    for head_size in (64, 32, 16, 8, 4, 2, 1):
        if hidden % head_size == 0:
            return hidden // head_size
    return 1


def attention_heads(config: PretrainedConfig) -> int:
    return getattr(config, "num_attention_heads", None) or config.n_heads
