"""Find the encoder's configuration where the projects that wrap encoders keep it.

A wrapping project stores its encoder's config in its own places, and only
there is it known (shapes cannot tell the number of attention heads):
- a Hugging Face `config.json` beside the weights (sentence-transformers: in the
  directory of the Transformer module that `modules.json` names);
- nested in the project's own config: SpanMarker's `config.json["encoder"]`,
  GLiNER's `gliner_config.json["encoder_config"]`, and similar `*_config`,
  `encoder` or `backbone` entries;
- an AllenNLP training config (in `model.tar.gz` or beside `best.th`): the
  `model_name` of its transformer token embedders (`allennlp.embedder_names`);
- a whole pickled model (`torch.save(model)`): the `config` objects it and its
  submodules hold (`model.bert.config`), a transformers config read as data from
  its stand-in when the file is not trusted (its type from its class's name);
- inside the checkpoint: OneIE's `config` (a dict or a pickled object) naming
  `bert_model_name`, Lightning's `hyper_parameters`, and the like.
Each place gives a full config or a model name, in that order; the caller
checks each against the weights. A config with an encoder's sizes but no
`model_type` (a TensorFlow or Paddle conversion's) is a candidate too: the caller
takes its type from the weights, where their names single one out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from diagnostics.file_kinds import read_json

from .allennlp import embedder_names
from .checkpoint import Checkpoint
from .converted import is_typeless_encoder_config
from .encoders import ENCODER_TYPES
from .safe_unpickle import StandIn, attributes

# Keys under which a config names its encoder (OneIE: bert_model_name; GLiNER: model_name).
NAME_KEYS = (
    "bert_model_name",
    "model_name_or_path",
    "pretrained_model_name_or_path",
    "model_name",
    "encoder_name",
    "encoder_model_name",
    "transformer_name",
    "transformer_model",
    "pretrained_model",
    "backbone_name",
    "_name_or_path",
)
# Keys under which a config nests its encoder's config (checked before any other key).
NESTED_KEYS = ("encoder_config", "encoder", "backbone_config", "backbone", "text_config",
               "bert_config", "transformer_config", "model_config")
# Where a checkpoint keeps its training configuration.
CHECKPOINT_CONTAINERS = ("config", "hyper_parameters", "hparams", "args", "cfg", "opt", "params")
# JSON files beside weights that are not model configs.
_NOT_CONFIGS = {
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "generation_config.json",
    "preprocessor_config.json",
    "added_tokens.json",
    "tokenizer.json",
    "modules.json",
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "spm.model",
    "added_tokens.json",
)
# A folder is a tokenizer only with one of these: from the other files alone (a
# tokenizer_config.json) transformers 5 builds one with no vocabulary, every word [UNK].
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "spm.model",
)
# config.json's `tokenizer_class` in an output without tokenizer files. For a known model
# type and no files, transformers 5's AutoTokenizer builds that type's tokenizer with an
# empty vocabulary (BERT: 5 special tokens, every word [UNK]) and says nothing; the
# backend that reads only tokenizer.json raises instead ("Couldn't instantiate the backend
# tokenizer"). A tokenizer_config.json added later names its own class and wins.
NO_TOKENIZER_CLASS = "TokenizersBackend"
_MAX_DEPTH = 3


@dataclass(frozen=True)
class Candidate:
    """One place a config (or the name of one) was found."""

    where: str  # e.g. "gliner_config.json['encoder_config']"
    values: dict[str, Any] | None = None  # a full config, with model_type
    name: str | None = None  # or a model name / path to look up locally
    base_dir: Path | None = None  # relative names and tokenizer files are looked up here
    problem: str | None = None  # or why the file that would hold one cannot be read
    file: Path | None = None  # the file that holds `values` (absolute)


def candidates(checkpoint: Checkpoint) -> list[Candidate]:
    """Every config or name the checkpoint's files carry, most specific first."""
    base = checkpoint.weights_dir
    found = [Candidate(e.where, name=e.name, problem=e.problem, base_dir=base)
             for e in embedder_names(checkpoint)]  # an AllenNLP config's token embedders
    config_json = base / "config.json"
    if config_json.is_file():
        found += _search_file(config_json, base)
    for other in sorted(base.glob("*.json")):
        if other.name != "config.json" and other.name not in _NOT_CONFIGS and "config" in (
            other.name
        ):
            found += _search_file(other, base)
    outer = checkpoint.path if checkpoint.path.is_dir() else checkpoint.path.parent
    inside: list[Candidate] = []
    for where, config in checkpoint.module_configs.items():  # what the model was built with
        inside += _search(config, where, outer)
    for key in CHECKPOINT_CONTAINERS:
        if key in checkpoint.extra:
            inside += _search(checkpoint.extra[key], f"checkpoint[{key!r}]", outer)
    rest = {k: v for k, v in checkpoint.extra.items() if k not in CHECKPOINT_CONTAINERS}
    inside += _search(rest, "checkpoint", outer, depth=_MAX_DEPTH)  # top-level names only
    held_in = (checkpoint.weights_file or checkpoint.path).resolve()
    found += [replace(c, file=held_in) if c.values is not None else c for c in inside]
    unique: dict[tuple[str, str], Candidate] = {}
    for c in found:
        unique.setdefault((c.where, c.name or ""), c)
    return list(unique.values())


# Any one tokenizer file: real ones are under 40 MB (Gemma's tokenizer.json: 33 MB).
TOKENIZER_FILE_BYTES = 64 * 2**20


def oversized_tokenizer_file(folder: Path) -> str | None:
    """The first tokenizer file in `folder` over TOKENIZER_FILE_BYTES, said in one line,
    from its size alone (nothing is read), or None."""
    from diagnostics.limits import human

    for name in TOKENIZER_FILES:
        path = folder / name
        if path.is_file() and (size := path.stat().st_size) > TOKENIZER_FILE_BYTES:
            return (f"{name} is {human(size)}, over the {human(TOKENIZER_FILE_BYTES)} a "
                    "tokenizer file may take")
    return None


class TokenizerLoadError(Exception):
    """The tokenizer files in a folder cannot be loaded; the message says why, in one line."""


def load_tokenizer(folder: Path) -> Any:
    """AutoTokenizer on `folder`'s files, offline, their JSON checked for size and depth
    before anything parses it: a tokenizer.json of gigabytes, or nested 100,000 deep, is
    refused in bounded time and memory (real ones: under 40 MB, a few levels deep).

    Raises:
        TokenizerLoadError: why the files cannot be loaded.
    """
    from transformers import AutoTokenizer

    from diagnostics.errors import first_line
    from diagnostics.limits import json_depth_problem

    if problem := oversized_tokenizer_file(folder):
        raise TokenizerLoadError(problem)
    for name in TOKENIZER_FILES:
        path = folder / name
        if name.endswith(".json") and path.is_file() and (
                problem := json_depth_problem(path.read_bytes())):
            raise TokenizerLoadError(f"{name}: {problem}")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # the files' fault, whatever the tokenizer class raises
        raise TokenizerLoadError(first_line(exc)) from None


def tokenizer_problem(folder: Path) -> str | None:
    """Why `load_tokenizer(folder)` fails, or None."""
    try:
        load_tokenizer(folder)
    except TokenizerLoadError as exc:
        return str(exc)
    return None


def tokenizer_dir(directory: Path | None) -> Path | None:
    """`directory` if it holds a tokenizer's vocabulary (not just its settings), else None."""
    if directory is None:
        return None
    return directory if any((directory / f).is_file() for f in VOCABULARY_FILES) else None


def _search_file(path: Path, base: Path) -> list[Candidate]:
    try:
        values = read_json(path)
    except ValueError as exc:  # listed with the reason; the weights decide what else fits
        return [Candidate(path.name, problem=f"not readable JSON: {exc}", base_dir=base)]
    return [replace(c, file=path.resolve()) if c.values is not None else c
            for c in _search(values, path.name, base, typeless=True)]


def _search(obj: Any, where: str, base: Path, depth: int = 0, typeless: bool = False
            ) -> Iterator[Candidate]:
    """Full encoder configs first (this level, then nested), then names. With `typeless`
    (a config file: what a conversion writes) a config without `model_type` is one too;
    a training run's hyper-parameters with a few sizes are not."""
    values = pickled_config_values(obj) or attributes(obj)
    if values is None or depth > _MAX_DEPTH:
        return []
    found: list[Candidate] = []
    if is_encoder_config(values) or (typeless and is_typeless_encoder_config(values)):
        found.append(Candidate(where, values=values, base_dir=base))
    nested = [k for k in (*NESTED_KEYS, *CHECKPOINT_CONTAINERS) if k in values] + sorted(
        k for k in values if isinstance(k, str) and k.endswith("_config") and k not in NESTED_KEYS
    )
    for key in nested:
        found += _search(values[key], f"{where}[{key!r}]", base, depth + 1, typeless)
    for key in NAME_KEYS:
        name = values.get(key)
        if isinstance(name, str) and name.strip():
            found.append(Candidate(f"{where}[{key!r}]={name!r}", name=name.strip(), base_dir=base))
    return found


def pickled_config_values(obj: Any) -> dict[str, Any] | None:
    """A transformers config object's values with its `model_type`, whether it was
    unpickled (trusted) or read as a stand-in (its recorded attributes, none of its code
    run: the type is found by the class's name among transformers' own); else None."""
    if isinstance(obj, PretrainedConfig):
        return obj.to_dict()
    if not isinstance(obj, StandIn):
        return None
    model_type = _transformers_config_type(obj.pickled_name)
    values = attributes(obj)
    if model_type is None or values is None:
        return None
    # What its to_dict() would write: dtypes by name; objects of other classes are no
    # config value (a stand-in's own attributes would reach config.json).
    values = {k: str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v
              for k, v in values.items()}
    return {**{k: v for k, v in values.items() if _json_like(v)}, "model_type": model_type}


def _json_like(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, (list, tuple)):
        return all(_json_like(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _json_like(v, depth + 1)
                   for k, v in value.items())
    return False


def _transformers_config_type(pickled_name: str) -> str | None:
    """`transformers.models.bert.configuration_bert.BertConfig` -> "bert" (also the older
    `transformers.configuration_bert.BertConfig`); None for any other class."""
    from transformers.models.auto.configuration_auto import (
        CONFIG_MAPPING_NAMES,
        model_type_to_module_name,
    )

    module, _, name = pickled_name.rpartition(".")
    if module.split(".")[0] != "transformers":
        return None
    types = [t for t, class_name in CONFIG_MAPPING_NAMES.items() if class_name == name]
    if len(types) > 1:  # a class several types share: the module says which
        types = [t for t in types if f".configuration_{model_type_to_module_name(t)}"
                 in module]
    return types[0] if len(types) == 1 else None


def is_encoder_config(values: Mapping[str, Any]) -> bool:
    """A dict that is a whole config of an encoder type we support."""
    return values.get("model_type") in ENCODER_TYPES and len(values) > 2
