"""Load a composite checkpoint file or weights directory, refusing what cannot be read safely.

A file is recognised by its bytes: safetensors, or a PyTorch pickle unpickled by
`safe_unpickle` (memory-mapped when a zip stores its members); a directory is read in the
Hugging Face, sharded or sentence-transformers layout. Sizes are checked before reading.
A pickled model's `config` objects are kept beside its weights (`pickled_models`), and
LayerNorm weights named `gamma`/`beta` are read as transformers reads them (`converted`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnostics import limits
from diagnostics.errors import first_line
from diagnostics.file_kinds import describe, read_json, safetensors_problem, torch_zip_problem

from ..errors import CheckpointError
from .converted import legacy_names
from .pickled_models import module_configs
from .safe_unpickle import torch_load
from .state_dicts import StateDict, extra_entries, find_state_dict

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".mdl")
_DIRECTORY_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class Checkpoint:
    """A loaded checkpoint: its state dict plus everything stored beside it."""

    path: Path
    format: str  # "torch-zip", "torch-legacy", "safetensors" or "directory:<inner format>"
    state_dict: StateDict
    location: str  # where the state dict was found, e.g. "checkpoint['model']"
    extra: dict[str, Any] = field(default_factory=dict)  # top-level non-state-dict entries
    trusted: bool = False
    mmap: bool = False
    stand_ins: tuple[str, ...] = ()  # pickled classes read as data, none of their code run
    weights_file: Path | None = None  # the file the weights came from (inside a directory)
    notes: tuple[str, ...] = ()  # how it was read, where that differs from the usual way
    # A pickled model's configs (`model.config`, `model.bert.config`), by where they sit.
    module_configs: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_dir(self) -> Path:
        """The directory the weights sit in: where their config and tokenizer would be."""
        return (self.weights_file or self.path).parent


def load_checkpoint(path: str | Path, trust: bool = False,
                    max_memory: int | None = None) -> Checkpoint:
    """Load a checkpoint file or a directory holding weights.

    Args:
        path: a `.bin/.pt/.pth/.ckpt/.mdl` pickle (zip or legacy), a `.safetensors`
            file, or a directory (Hugging Face layout, sharded index, a single weights
            file, or a sentence-transformers model: `modules.json` names its Transformer).
        trust: unpickle with arbitrary code (`torch.load(weights_only=False)`); without
            it, classes torch does not allow are read as inert stand-ins.
        max_memory: bytes the weights read into memory may take (default:
            `limits.default_max_memory()`); a memory-mapped zip takes none.

    LayerNorm weights named `gamma`/`beta` (TensorFlow and Paddle conversions) are read
    as `weight`/`bias`, as transformers' loader reads them, and a note says so.
    """
    checkpoint = _load(Path(path), trust, max_memory)
    checkpoint.state_dict, renamed = legacy_names(checkpoint.state_dict)
    if renamed:
        checkpoint.notes += (f"{renamed} LayerNorm weights named gamma/beta (a TensorFlow or "
                             "Paddle conversion) read as weight/bias, as transformers does",)
    return checkpoint


def _load(path: Path, trust: bool, max_memory: int | None) -> Checkpoint:
    if not path.exists():
        raise CheckpointError(f"no such file or directory: {path}")
    if path.is_dir():
        return _load_directory(path, trust, max_memory)
    kind = _recognise(path)
    if kind == "safetensors":
        _refuse_too_large(path, path.stat().st_size, max_memory)
        state_dict = _load_safetensors(path)
        return Checkpoint(path, "safetensors", state_dict, "top level", trusted=trust,
                          weights_file=path)
    mmap, notes = True, ()
    if kind == "torch-zip":
        mmap = _mappable_zip(path, max_memory)
        if not mmap:
            notes = ("its zip members are compressed (deflate): read into memory, not "
                     "memory-mapped",)
    else:
        _refuse_too_large(path, path.stat().st_size, max_memory)
    obj, fmt, mmap, stand_ins = torch_load(path, trust, kind, mmap)
    state_dict, location = find_state_dict(obj, path)
    extra = extra_entries(obj, state_dict)
    return Checkpoint(path, fmt, state_dict, location, extra, trusted=trust, mmap=mmap,
                      stand_ins=stand_ins, weights_file=path, notes=notes,
                      module_configs=module_configs(obj))


def _mappable_zip(path: Path, max_memory: int | None) -> bool:
    """Whether torch can memory-map the archive: every member stored, as torch.save
    writes it. A re-compressed one is read into memory, so what its members declare
    they inflate to must fit the budget (a member may declare 16 GiB in a few bytes)."""
    with zipfile.ZipFile(path) as archive:  # it opened in _recognise
        members = archive.infolist()
    compressed = [m for m in members if m.compress_type != zipfile.ZIP_STORED]
    if not compressed:
        return True
    methods = {m.compress_type for m in compressed} - {zipfile.ZIP_DEFLATED}
    if methods:
        raise CheckpointError(f"{path} is a zip compressed with method {min(methods)}, which "
                              "torch cannot read (only stored or deflated members); unzip it "
                              "and zip it again without compression")
    _refuse_too_large(path, sum(m.file_size for m in members), max_memory, "inflated")
    return False


def _refuse_too_large(path: Path, nbytes: int, max_memory: int | None,
                      how: str = "read into memory") -> None:
    problem = limits.too_large(f"{path.name} {how}", nbytes, max_memory)
    if problem:
        raise CheckpointError(f"{path}: {problem}")


def _recognise(path: Path) -> str:
    """"safetensors", "torch-zip" or "torch-legacy" from the file's bytes; else refuse it.

    Raises:
        CheckpointError: what the file looks like instead, in a few words.
    """
    try:
        kind = describe(path)
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {first_line(exc)}") from None
    if kind == "a safetensors file":
        return "safetensors"
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path} is not a readable safetensors file: "
                              f"{safetensors_problem(path)}")
    if kind == "a zip":
        problem = torch_zip_problem(path)
        if problem:
            raise CheckpointError(f"{path} is {problem}")
        return "torch-zip"
    if kind == "a PyTorch checkpoint (legacy format)":
        return "torch-legacy"
    hint = "; python -m diagnostics reads ONNX files" if kind == "an ONNX model" else ""
    raise CheckpointError(f"{path} is {kind}, not a PyTorch checkpoint or safetensors file{hint}")


def _load_directory(path: Path, trust: bool, max_memory: int | None) -> Checkpoint:
    module_dir = sentence_transformer_dir(path)
    weights = _directory_weights(module_dir or path)
    if weights is None:
        where = f"{module_dir} (the Transformer module modules.json names)" if module_dir else path
        raise CheckpointError(
            f"{where} is a directory without weights (looked for "
            f"{', '.join(_DIRECTORY_WEIGHTS)} or a single *.safetensors/*.bin/*.pt file)"
        )
    if weights.name.endswith(".index.json"):
        inner = Checkpoint(path, "sharded", _load_sharded(weights, trust, max_memory),
                           "top level", trusted=trust, weights_file=weights)
    else:
        inner = _load(weights, trust, max_memory)
    inner.path, inner.format = path, f"directory:{inner.format}"
    return inner


def sentence_transformer_dir(path: Path) -> Path | None:
    """The Transformer module's directory of a sentence-transformers model, else None.

    `modules.json` lists the modules; the Transformer (`models.BERT` before v0.3) is
    saved in the root (`"path": ""`, v2 and later) or in `0_Transformer/` (v1).
    """
    index = path / "modules.json"
    if not index.is_file():
        return None
    try:
        modules = read_json(index)
    except ValueError as exc:
        raise CheckpointError(f"{index} is not valid JSON: {exc}") from None
    if not isinstance(modules, list):
        raise CheckpointError(f"{index} is not a sentence-transformers module list")
    for module in modules:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if kind.endswith((".Transformer", ".BERT", ".RoBERTa", ".XLMRoBERTa")):
            return (path / str(module.get("path", ""))).resolve()
    kinds = ", ".join(str(m.get("type")) for m in modules if isinstance(m, dict))
    raise CheckpointError(f"{index} names no Transformer module (types: {kinds})")


def _directory_weights(path: Path) -> Path | None:
    for name in _DIRECTORY_WEIGHTS:
        if (path / name).is_file():
            return path / name
    singles = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if len(singles) == 1:
        return singles[0]
    if len(singles) > 1:
        names = ", ".join(p.name for p in singles)
        raise CheckpointError(f"{path} holds several weight files ({names}); pass one of them")
    return None


def _load_sharded(index_file: Path, trust: bool, max_memory: int | None) -> StateDict:
    try:
        weight_map = read_json(index_file)["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else first_line(exc)
        raise CheckpointError(f"{index_file} is not a valid shard index: {reason}") from None
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str) and v for v in weight_map.values()
    ):
        raise CheckpointError(f"{index_file} is not a valid shard index: weight_map is not a "
                              "mapping of names to shard files")
    state_dict: StateDict = {}
    shards = []
    for shard in sorted(set(weight_map.values())):
        shard_path = (index_file.parent / shard).resolve()
        if index_file.parent.resolve() not in shard_path.parents:
            raise CheckpointError(f"{index_file} names shard {shard!r} outside its directory")
        if not shard_path.is_file():
            raise CheckpointError(f"{index_file} names shard {shard!r}, which is missing")
        shards.append(shard_path)
    _refuse_too_large(index_file, sum(p.stat().st_size for p in shards), max_memory,
                      "(its shards) read into memory")
    for shard_path in shards:
        state_dict.update(_load(shard_path, trust, max_memory).state_dict)
    missing = [name for name in weight_map if name not in state_dict]
    if missing:
        raise CheckpointError(f"{index_file} lists {len(missing)} tensors its shards do not "
                              f"hold (e.g. {missing[0]})")
    return state_dict


def _load_safetensors(path: Path) -> StateDict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # the file passed the header check: whatever fails is the file's
        raise CheckpointError(f"{path} is not a readable safetensors file: "
                              f"{first_line(exc)}") from None
