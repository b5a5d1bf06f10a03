"""LoRA (PEFT) weights saved unmerged: merge them, as PEFT's `merge_and_unload` does.

loralib's layers (`lora.Linear`) keep `weight` beside `lora_A`/`lora_B`, the same
merge. A PEFT-wrapped encoder's `state_dict()` holds `<m>.base_layer.weight` with
`<m>.lora_A.<adapter>.weight` and `<m>.lora_B.<adapter>.weight` (embeddings:
`lora_embedding_A/B.<adapter>`) under `base_model.model.`; an adapter folder
(`save_pretrained`) holds only the LoRA tensors (no adapter name) in
`adapter_model.safetensors`/`.bin`, and names its base in adapter_config.json's
`base_model_name_or_path`. The merged weight is W + (B @ A) * scale, transposed for
embeddings and with `fan_in_fan_out`; scale = lora_alpha / r, or lora_alpha / sqrt(r) with
`use_rslora` (r per module from the shapes, alpha from `alpha_pattern` where it names the
module). lora_alpha is in adapter_config.json only: without it, or without the base weights,
the run is refused. DoRA and other PEFT methods are refused too: merging them is not this.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from diagnostics.file_kinds import read_json

from ..errors import CheckpointError
from .checkpoint import Checkpoint, load_checkpoint
from .safe_unpickle import attributes
from .state_dicts import StateDict

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_WRAPPER = "base_model.model."
# <module>.lora_A[.<adapter>].weight | <module>.lora_embedding_A[.<adapter>] (and B; B's bias)
_LORA = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B)"
                   r"(?:\.(?P<adapter>[^.]+))??(?:\.(?P<tensor>weight|bias))?$")
_BASE = re.compile(r"^(?P<module>.+)\.base_layer\.(?P<tensor>[^.]+)$")
_SAVED_COPY = re.compile(r"^(?P<module>.+)\.(?:modules_to_save\.(?P<adapter>[^.]+)|"
                         r"original_module)\.(?P<tensor>[^.]+)$")
_REFUSED = ("lora_magnitude_vector", "lora_dropout", "hada_w", "lokr_w", "ia3_l",
            "vera_lambda", "oft_r", "boft_R", "lora_E", "trainable_tokens_delta")
_MAX_DEPTH = 3
_MAX_PATTERN = 300
_NESTED_REPEAT = re.compile(r"\)[*+{]")  # a repeated group: (a+)+ and its kin


@dataclass(frozen=True)
class LoraSettings:
    """What adapter_config.json says about scaling, and where it was read."""

    alpha: float
    rslora: bool
    fan_in_fan_out: bool
    alpha_pattern: dict[str, float]
    base_model: str | None
    where: str


def adapter_weights(directory: Path) -> Path | None:
    """A PEFT adapter folder's weights (`save_pretrained`; a Trainer's `checkpoint-N/`
    beside optimizer.pt and training_args.bin), else None."""
    if not directory.is_dir() or not (directory / ADAPTER_CONFIG).is_file():
        return None
    return next((directory / n for n in ADAPTER_WEIGHTS if (directory / n).is_file()), None)


def has_lora(state_dict: StateDict) -> bool:
    return any(_LORA.match(k) for k in state_dict)


def merge_lora(ckpt: Checkpoint, trust: bool = False, max_memory: int | None = None,
               cache_dir: str | Path | None = None) -> Checkpoint:
    """The checkpoint with its LoRA weights merged into the base weights (unchanged when it
    holds none). An adapter folder's base is loaded from `base_model_name_or_path`: a
    local directory (beside the adapter first) or the local Hugging Face cache.

    Raises:
        CheckpointError: a PEFT method other than plain LoRA, several adapters, no
            adapter_config.json with lora_alpha, or an adapter whose base is not here.
    """
    if not has_lora(ckpt.state_dict):
        return ckpt
    _refuse_other_methods(ckpt.state_dict)
    settings = _settings(ckpt)
    if _holds_base(ckpt.state_dict):
        merged, count = _merge(ckpt.state_dict, settings, {})
        return replace(ckpt, state_dict=_unwrapped(merged), notes=(*ckpt.notes, _note(
            count, settings)))
    base = _base_checkpoint(ckpt, settings, trust, max_memory, cache_dir)
    adapter = {k.removeprefix(_WRAPPER): v for k, v in ckpt.state_dict.items()}
    merged, count = _merge(adapter, settings, base.state_dict)
    return replace(base, path=ckpt.path, format=f"peft-adapter+{base.format}",
                   location=f"{ckpt.weights_file.name if ckpt.weights_file else ckpt.path} "
                            f"over {base.path}",
                   state_dict=merged, notes=(*base.notes, _note(count, settings)))


def _holds_base(state_dict: StateDict) -> bool:
    """Whether the base weights are here: PEFT's `base_layer`, or loralib's layers, which
    keep `weight` beside `lora_A`/`lora_B`. Else it is an adapter without its base."""
    if any(".base_layer." in k for k in state_dict):
        return True
    modules = {m["module"] for k in state_dict if (m := _LORA.match(k))}
    return all(f"{m}.weight" in state_dict for m in modules)


def _note(count: int, settings: LoraSettings) -> str:
    scale = "lora_alpha/sqrt(r)" if settings.rslora else "lora_alpha/r"
    return (f"LoRA merged into {count} modules (W + B·A·{scale}, lora_alpha={settings.alpha:g}, "
            f"from {settings.where})")


def _refuse_other_methods(state_dict: StateDict) -> None:
    for key in state_dict:
        part = next((p for p in _REFUSED if f".{p}" in key), None)
        if part:
            what = "DoRA" if part == "lora_magnitude_vector" else f"a PEFT method ({part})"
            raise CheckpointError(f"{key} is {what} that is not plain LoRA: merging it is not "
                                  "supported; merge it with PEFT (merge_and_unload) and save "
                                  "the merged model")


def _settings(ckpt: Checkpoint) -> LoraSettings:
    values, where = _adapter_config(ckpt)
    if values is None:
        lora = sum(1 for k in ckpt.state_dict if _LORA.match(k))
        raise CheckpointError(
            f"LoRA weights found ({lora} tensors) but no {ADAPTER_CONFIG} beside "
            f"{ckpt.weights_file or ckpt.path} or inside the checkpoint says their lora_alpha "
            f"(the scale of the merge cannot be read from the weights); put the adapter's "
            f"{ADAPTER_CONFIG} beside the checkpoint"
        )
    peft_type = str(values.get("peft_type") or "LORA").upper()
    if peft_type != "LORA":
        raise CheckpointError(f"{where} is a {peft_type[:40]} adapter, not LoRA: merging it is "
                              "not supported")
    if values.get("use_dora"):
        raise CheckpointError(f"{where} is a DoRA adapter (use_dora): merging it is not "
                              "supported; merge it with PEFT and save the merged model")
    alpha = values.get("lora_alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(
            alpha):
        raise CheckpointError(f"{where} has no numeric lora_alpha ({str(alpha)[:40]}); the "
                              "scale of the merge cannot be read from the weights")
    pattern = values.get("alpha_pattern") or {}
    if not isinstance(pattern, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in pattern.values()):
        raise CheckpointError(f"{where}: alpha_pattern is not a mapping of names to numbers")
    base = values.get("base_model_name_or_path")
    return LoraSettings(float(alpha), bool(values.get("use_rslora")),
                        bool(values.get("fan_in_fan_out")),
                        {str(k): float(v) for k, v in pattern.items()},
                        base if isinstance(base, str) and base.strip() else None, where)


def _adapter_config(ckpt: Checkpoint) -> tuple[dict[str, Any] | None, str]:
    beside = ckpt.weights_dir / ADAPTER_CONFIG
    if beside.is_file():
        try:
            values = read_json(beside)
        except ValueError as exc:
            raise CheckpointError(f"{beside} is not readable JSON: {exc}") from None
        if not isinstance(values, dict):
            raise CheckpointError(f"{beside} is not a PEFT adapter config")
        return values, str(beside)
    found = _search(ckpt.extra, "checkpoint", 0)
    return found if found else (None, "")


def _search(obj: Any, where: str, depth: int) -> tuple[dict[str, Any], str] | None:
    """A LoRA config stored inside the checkpoint (a dict or a pickled LoraConfig)."""
    values = attributes(obj)
    if values is None or depth > _MAX_DEPTH:
        return None
    if "lora_alpha" in values and "r" in values:
        return values, where
    for key, value in values.items():
        found = _search(value, f"{where}[{key!r}]", depth + 1) if isinstance(key, str) else None
        if found:
            return found
    return None


def _merge(state_dict: StateDict, settings: LoraSettings, base: StateDict
           ) -> tuple[StateDict, int]:
    """Every module's merged weight; `base` holds the weights an adapter folder lacks."""
    lora: dict[str, dict[str, torch.Tensor]] = {}
    adapters: set[str] = set()
    merged: StateDict = dict(base)
    copies: StateDict = {}
    for key, tensor in state_dict.items():
        if (found := _LORA.match(key)) is not None:
            if found["adapter"]:
                adapters.add(found["adapter"])
            part = found["part"].replace("embedding_", "") + (
                ".bias" if found["tensor"] == "bias" else "")
            lora.setdefault(found["module"], {})[part] = tensor
            lora[found["module"]]["embedding"] = "embedding" in found["part"]
        elif (found := _BASE.match(key)) is not None:
            merged[f"{found['module']}.{found['tensor']}"] = tensor
        elif (found := _SAVED_COPY.match(key)) is not None:
            if found["adapter"]:  # the trained copy wins over the original
                copies[f"{found['module']}.{found['tensor']}"] = tensor
            else:
                merged.setdefault(f"{found['module']}.{found['tensor']}", tensor)
        else:
            merged[key] = tensor
    merged.update(copies)
    if len(adapters) > 1:
        raise CheckpointError(f"several LoRA adapters ({', '.join(sorted(adapters))}) in one "
                              "checkpoint: which one is active is not saved; keep one")
    for module, parts in lora.items():
        _merge_module(merged, module, parts, settings)
    return merged, len(lora)


def _merge_module(merged: StateDict, module: str, parts: dict[str, Any],
                  settings: LoraSettings) -> None:
    a, b = parts.get("lora_A"), parts.get("lora_B")
    weight = merged.get(f"{module}.weight")
    if a is None or b is None:
        raise CheckpointError(f"{module}: LoRA {'lora_B' if a is not None else 'lora_A'} "
                              "without its other half; the checkpoint is incomplete")
    if weight is None:
        raise CheckpointError(f"{module}: LoRA weights for a module whose base weight "
                              f"{module}.weight is not in the base model's weights")
    rank = int(a.shape[0]) if a.dim() == 2 else 0
    if a.dim() != 2 or b.dim() != 2 or b.shape[1] != rank or rank == 0:
        raise CheckpointError(f"{module}: LoRA shapes {list(a.shape)} and {list(b.shape)} do "
                              "not multiply")
    transposed = parts["embedding"] or settings.fan_in_fan_out
    update = (int(a.shape[1]), int(b.shape[0])) if transposed else (int(b.shape[0]),
                                                                      int(a.shape[1]))
    # Checked before multiplying: two thin matrices of a few KB can declare a product of TBs.
    if tuple(weight.shape) != update:
        raise CheckpointError(f"{module}: LoRA update {list(update)} does not fit its weight "
                              f"{list(weight.shape)}")
    unusable = next((t for t in (weight, a, b) if t.is_meta or not t.is_floating_point()), None)
    if unusable is not None:
        what = ("a meta tensor (no data)" if unusable.is_meta
                else str(unusable.dtype).removeprefix("torch."))
        raise CheckpointError(f"{module}: a LoRA merge needs real floating-point tensors, and "
                              f"one is {what}")
    alpha = _alpha(module, settings)
    scale = alpha / math.sqrt(rank) if settings.rslora else alpha / rank
    delta = b.float() @ a.float()
    if transposed:
        delta = delta.T
    merged[f"{module}.weight"] = (weight.float() + delta * scale).to(weight.dtype)
    bias = parts.get("lora_B.bias")
    if bias is not None:  # lora_bias: B's bias is scaled into the layer's bias
        old = merged.get(f"{module}.bias")
        new = bias.float() * scale if old is None else old.float() + bias.float() * scale
        merged[f"{module}.bias"] = new.to(weight.dtype)


def _alpha(module: str, settings: LoraSettings) -> float:
    """PEFT's `get_pattern_key`: a pattern names a module when it matches its end."""
    name = module.split(_WRAPPER)[-1]
    for pattern, alpha in settings.alpha_pattern.items():
        if len(pattern) > _MAX_PATTERN or _NESTED_REPEAT.search(pattern):
            raise CheckpointError(f"{settings.where}: alpha_pattern key {pattern[:60]!r} is "
                                  "longer than a module name or repeats a repeated group (a "
                                  "pattern that can take hours to match); refused")
        try:
            if re.match(rf"(.*\.)?({pattern})$", name):
                return alpha
        except re.error:
            raise CheckpointError(f"{settings.where}: alpha_pattern key {pattern[:60]!r} is "
                                  "not a regular expression") from None
    return settings.alpha


def _unwrapped(state_dict: StateDict) -> StateDict:
    """Keys with PEFT's `base_model.model.` wrapper removed, as `merge_and_unload` returns
    the model it wrapped (`bert.base_model.model.encoder.` -> `bert.encoder.`)."""
    out: StateDict = {}
    for key, tensor in state_dict.items():
        at = key.find(_WRAPPER)
        if at == 0 or (at > 0 and key[at - 1] == "."):
            key = key[:at] + key[at + len(_WRAPPER):]
        if key in out:
            raise CheckpointError(f"{key} is in the checkpoint both inside and outside PEFT's "
                                  "base_model.model. wrapper; refused")
        out[key] = tensor
    return out


def _base_checkpoint(ckpt: Checkpoint, settings: LoraSettings, trust: bool,
                     max_memory: int | None, cache_dir: str | Path | None) -> Checkpoint:
    name = settings.base_model
    if name is None:
        raise CheckpointError(f"LoRA adapter found; its base model is needed, and "
                              f"{settings.where} names none (base_model_name_or_path)")
    directory = _base_directory(name, ckpt.weights_dir, cache_dir)
    if directory is None:
        raise CheckpointError(f"LoRA adapter found; base model {name!r} needed: not a local "
                              "directory and not in the local Hugging Face cache (nothing is "
                              "downloaded)")
    return load_checkpoint(directory, trust, max_memory)


def _base_directory(name: str, beside: Path, cache_dir: str | Path | None) -> Path | None:
    path = Path(name).expanduser()
    for directory in ([beside / path] if not path.is_absolute() else []) + [path]:
        if directory.is_dir():
            return directory
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        return None
    from huggingface_hub import try_to_load_from_cache

    for file in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json"):
        try:
            found = try_to_load_from_cache(name, file, cache_dir=cache_dir)
        except ValueError:
            return None
        if isinstance(found, str):
            return Path(found).parent
    return None
