"""AllenNLP models (DyGIE++ and the rest): the archive, the serialization folder, the name.

`archive_model` writes `model.tar.gz` holding `config.json` (the training config),
`weights.th` (the model's state dict), `vocabulary/` and `meta.json`; a serialization
folder holds `best.th` with the same `config.json` beside it. The transformer is named
only in the config, by the token embedder that builds it:
`{"type": "pretrained_transformer" | "pretrained_transformer_mismatched", "model_name": ...}`
(AllenNLP 1-2) or `{"type": "bert-pretrained", "pretrained_model": ...}` (0.9); its
weights sit under `<model attr>.token_embedder_<key>.[_matched_embedder.]transformer_model.`
(`bert_model.` in 0.9). A `sub_module` or `transformer_kwargs` that change the model
are not followed: their candidate says why and the user is asked for a config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diagnostics.file_kinds import read_json
from diagnostics.limits import MAX_JSON_BYTES

from ..errors import CheckpointError
from .archives import extracted
from .checkpoint import Checkpoint, load_checkpoint

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("weights.th", "best.th")  # archival.get_weights_path's order
# Where an archive's config travels in Checkpoint.extra (the archive's folder is gone).
EXTRA_KEY = "allennlp archive config.json"
EMBEDDER_TYPES = {
    "pretrained_transformer": "model_name",
    "pretrained_transformer_mismatched": "model_name",
    "bert-pretrained": "pretrained_model",
}
# transformer_kwargs that leave the numbers alone (dropout is off at inference).
_HARMLESS_KWARGS = ("dropout", "output_attentions", "output_hidden_states", "use_cache",
                    "gradient_checkpointing", "add_pooling_layer", "cache_dir", "revision",
                    "local_files_only", "torch_dtype", "dtype", "trust_remote_code")
_MAX_DEPTH = 8


@dataclass(frozen=True)
class EmbedderName:
    """One transformer token embedder in an AllenNLP config: its name, or why not."""

    where: str  # e.g. "model.tar.gz:config.json['model']...['bert']['model_name']='x'"
    name: str | None
    problem: str | None = None


def is_allennlp_config(values: Any) -> bool:
    """A training config: a `model` with a registered `type`, beside its data reader."""
    return (isinstance(values, dict) and isinstance(values.get("model"), dict)
            and isinstance(values["model"].get("type"), str)
            and ("dataset_reader" in values or "trainer" in values))


def load_archive(path: Path, trust: bool = False, max_memory: int | None = None) -> Checkpoint:
    """The state dict of `weights.th` (or `best.th`) in an AllenNLP `model.tar.gz`, with its
    config.json kept in `extra` for `embedder_names`.

    Raises:
        CheckpointError: not an AllenNLP archive (no config.json or no weights at its
            root, or a config that is not AllenNLP's), or anything the archive's safety
            checks refuse.
    """
    with extracted(path, (CONFIG_NAME, *WEIGHTS_NAMES), max_memory,
                   {CONFIG_NAME: MAX_JSON_BYTES}) as files:
        weights = next((files[n] for n in WEIGHTS_NAMES if n in files), None)
        if CONFIG_NAME not in files or weights is None:
            missing = " and ".join(n for n, ok in ((CONFIG_NAME, CONFIG_NAME in files),
                                                   ("weights.th", weights is not None)) if not ok)
            raise CheckpointError(f"{path} is a tar archive without {missing} at its root: not "
                                  "an AllenNLP model archive")
        config = _read_config(files[CONFIG_NAME], f"{path}:{CONFIG_NAME}")
        inner = load_checkpoint(weights, trust, max_memory)  # memory-mapped: outlives the copy
    note = (f"an AllenNLP archive: {weights.name} and {CONFIG_NAME} read from a temporary "
            "copy, since removed (nothing else in it was unpacked)")
    return replace(inner, path=path, format=f"allennlp-archive:{inner.format}",
                   location=f"{weights.name} {inner.location}", weights_file=path,
                   extra={**inner.extra, EXTRA_KEY: config}, notes=(*inner.notes, note))


def serialization_weights(directory: Path) -> Path | None:
    """`weights.th`/`best.th` of a folder holding an AllenNLP config.json, else None."""
    if not directory.is_dir() or not (directory / CONFIG_NAME).is_file():
        return None
    weights = next((directory / n for n in WEIGHTS_NAMES if (directory / n).is_file()), None)
    if weights is None:
        return None
    try:
        values = read_json(directory / CONFIG_NAME)
    except ValueError:
        return None  # not ours to judge: the usual directory reading says what is wrong
    return weights if is_allennlp_config(values) else None


def _read_config(path: Path, shown: str) -> dict[str, Any]:
    try:
        values = read_json(path)
    except ValueError as exc:
        raise CheckpointError(f"{shown} is not readable JSON: {exc}") from None
    if not is_allennlp_config(values):
        raise CheckpointError(f"{shown} is not an AllenNLP training config (no 'model' with a "
                              "'type' beside a 'dataset_reader')")
    return values


def embedder_names(checkpoint: Checkpoint) -> list[EmbedderName]:
    """The transformer embedders an AllenNLP config names, from an archive's config
    (kept in `extra`) or the config.json beside `best.th`; [] for any other checkpoint."""
    values = checkpoint.extra.get(EXTRA_KEY)
    where = f"{checkpoint.path.name}:{CONFIG_NAME}"
    if values is None:
        beside = checkpoint.weights_dir / CONFIG_NAME
        if not beside.is_file():
            return []
        try:
            values = read_json(beside)
        except ValueError:
            return []  # config_sources lists it with its reason
        where = CONFIG_NAME
    if not is_allennlp_config(values):
        return []
    found: list[EmbedderName] = []
    _walk(values["model"], f"{where}['model']", 0, found)
    return found


def _walk(obj: Any, where: str, depth: int, found: list[EmbedderName]) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            _walk(item, f"{where}[{i}]", depth + 1, found)
        return
    if not isinstance(obj, dict):
        return
    key = EMBEDDER_TYPES.get(obj.get("type")) if isinstance(obj.get("type"), str) else None
    name = obj.get(key) if key else None
    if isinstance(name, str) and name.strip():
        shown = f"{where}[{key!r}]={name.strip()!r}"
        found.append(EmbedderName(shown, name.strip(), _changed_model(obj)))
        return
    for child, value in obj.items():
        if isinstance(child, str):
            _walk(value, f"{where}[{child!r}]", depth + 1, found)


def _changed_model(embedder: dict[str, Any]) -> str | None:
    """Why the named model is not the one whose weights were saved, or None."""
    if embedder.get("sub_module"):
        return (f"sub_module={str(embedder['sub_module'])[:40]!r}: the weights are a part of "
                "the named model, not all of it; pass --config")
    kwargs = embedder.get("transformer_kwargs") or {}
    changed = sorted(k for k in kwargs if isinstance(k, str) and not
                     any(k == h or k.endswith(h) or k.endswith(f"{h}_prob") for h in
                         _HARMLESS_KWARGS)) if isinstance(kwargs, dict) else ["?"]
    if changed:
        return (f"transformer_kwargs {', '.join(changed)[:80]} change the named model's "
                "config; pass --config")
    return None
