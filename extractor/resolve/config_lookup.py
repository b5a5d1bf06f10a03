"""Find a config by file, directory or model name, offline: nothing is downloaded.

A name is looked up as a directory (beside the checkpoint first), then in the local Hugging
Face cache under each of its aliases, then (a checkpoint's candidate) in the built-in table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from diagnostics.file_kinds import read_json

from ..errors import ArchitectureError
from .config_checks import new_config
from .config_sources import VOCABULARY_FILES, Candidate, tokenizer_dir
from .known_configs import builtin_config, hub_aliases

_HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")  # what may be looked up in the local HF cache


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        values = read_json(path)
    except ValueError as exc:
        raise ArchitectureError(f"--config {path} is not a readable JSON file: {exc}") from None
    if not isinstance(values, dict) or "model_type" not in values:
        raise ArchitectureError(f"--config {path} has no 'model_type' (not a model config?)")
    return values


def config_from_values(values: dict[str, Any], where: str) -> PretrainedConfig:
    values = dict(values)
    model_type = values.pop("model_type", None)
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ArchitectureError(f"{where}: model type {repr(model_type)[:60]} is not one "
                                "transformers knows")
    values.pop("transformers_version", None)
    return new_config(CONFIG_MAPPING[model_type], values, where)


def config_from_model(
    name: str, cache_dir: str | Path | None, base_dir: Path | None = None
) -> tuple[PretrainedConfig | None, Path | None, Path | None]:
    """Config, tokenizer directory and the config's file, from a local directory or the
    local HF cache (paths absolute: they are shown as where the files came from)."""
    def directories() -> Iterator[Path]:
        yield from _local_dirs(name, base_dir)
        if _HUB_NAME.fullmatch(name) is not None:
            yield from (s for n in hub_aliases(name) if (s := _cached_snapshot(n, cache_dir)))

    for directory in directories():
        found = directory_config(directory)
        if found is not None:
            directory = directory.resolve()
            return found, tokenizer_dir(directory), directory / "config.json"
    return None, None, None


def directory_config(directory: Path) -> PretrainedConfig | None:
    """The config in `directory/config.json`, None when it holds no model config."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    try:
        values = read_json(path)
    except ValueError as exc:
        raise ArchitectureError(f"{path} is not a readable JSON file: {exc}") from None
    if isinstance(values, dict) and isinstance(values.get("model_type"), str) and \
            values["model_type"] in CONFIG_MAPPING:
        return config_from_values(values, str(path))
    return None


def _local_dirs(name: str, base_dir: Path | None) -> list[Path]:
    path = Path(name).expanduser()
    dirs = [path]
    if base_dir is not None and not path.is_absolute():
        dirs.insert(0, base_dir / path)
    return [d for d in dirs if d.is_dir()]


def _cached_snapshot(name: str, cache_dir: str | Path | None, file: str = "config.json"
                     ) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, file, cache_dir=cache_dir)
    except ValueError:  # not a name the Hub could hold (`../..`): nothing cached under it
        return None
    return Path(found).parent if isinstance(found, str) else None


def cached_tokenizer(name: str, cache_dir: str | Path | None) -> Path | None:
    """The name's tokenizer in the local HF cache, for a config from the built-in table:
    a tokenizer class's own `from_pretrained` (OneIE's BertTokenizer) caches no config."""
    if _HUB_NAME.fullmatch(name) is None:
        return None
    for alias in hub_aliases(name):
        for file in VOCABULARY_FILES:
            snapshot = _cached_snapshot(alias, cache_dir, file)
            if snapshot is not None:
                return tokenizer_dir(snapshot.resolve())
    return None


def cache_location(cache_dir: str | Path | None) -> str:
    from huggingface_hub import constants

    return str(cache_dir or constants.HF_HUB_CACHE)


def candidate_config(
    candidate: Candidate, cache_dir: str | Path | None
) -> tuple[PretrainedConfig | None, str, str, Path | None, Path | None]:
    """(config or None, kind, source text or the reason there is none, tokenizer dir,
    the file the config was read from)."""
    if candidate.problem is not None:
        return None, "", candidate.problem, None, None
    if candidate.values is not None:
        return (config_from_values(candidate.values, candidate.where), "found",
                candidate.where, None, candidate.file)
    config, tokenizers, read_from = config_from_model(candidate.name, cache_dir,
                                                      candidate.base_dir)
    if config is not None:
        return config, "found", f"{candidate.where} (local files)", tokenizers, read_from
    config = builtin_config(candidate.name)
    if config is not None:
        return (config, "builtin", f"{candidate.where}, built-in table",
                cached_tokenizer(candidate.name, cache_dir), None)
    return (None, "", "not a local directory, not in the local Hugging Face cache, not in the "
            "built-in table", None, None)
