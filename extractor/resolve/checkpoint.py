"""Load a composite checkpoint safely and find the state dict inside it.

Pickles are loaded with `torch.load(weights_only=True)` (memory-mapped when the
file is a zip archive), so a checkpoint that needs arbitrary code is refused
unless the caller trusts it. The state dict is searched for wherever it sits; a
pickled model's `config` objects are kept beside it. A dynamically quantized
checkpoint (packed int8 weights no fresh encoder holds) is named and refused.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
import zipfile
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diagnostics import limits
from diagnostics.file_kinds import describe, read_json, safetensors_problem, torch_zip_problem

from ..errors import CheckpointError, UnsafeCheckpointError
from .converted import legacy_names

StateDict = dict[str, torch.Tensor]

# Keys under which training code usually stores the model's state dict, best first.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "network", "net")
_MAX_DEPTH = 4
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

    LayerNorm weights named `gamma`/`beta` (TensorFlow and Paddle conversions) are read
    as `weight`/`bias`, as transformers' loader reads them, and a note says so.

    Args:
        path: a `.bin/.pt/.pth/.ckpt/.mdl` pickle (zip or legacy), a `.safetensors`
            file, or a directory (Hugging Face layout, sharded index, a single weights
            file, or a sentence-transformers model: `modules.json` names its Transformer).
        trust: unpickle with arbitrary code (`torch.load(weights_only=False)`); without
            it, classes torch does not allow are read as inert stand-ins.
        max_memory: bytes the weights read into memory may take (default:
            `limits.default_max_memory()`); a memory-mapped zip takes none.
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
    obj, fmt, mmap, stand_ins = _torch_load(path, trust, kind, mmap)
    state_dict, location = find_state_dict(obj, path)
    extra = _extra_entries(obj, state_dict)
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
        raise CheckpointError(f"{path} cannot be read: {_first_line(exc)}") from None
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
        reason = f"no {exc}" if isinstance(exc, KeyError) else _first_line(exc)
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
                              f"{_first_line(exc)}") from None


def _torch_load(path: Path, trust: bool, fmt: str, mappable: bool = True
                ) -> tuple[Any, str, bool, tuple[str, ...]]:
    """The unpickled object, its format, whether it is memory-mapped, and the stand-ins used.

    Untrusted files go through torch's weights-only unpickler. A class it does not
    allow (a project's `Config`, `argparse.Namespace`, a pickled module) is replaced
    by an inert stand-in that keeps the object's data and runs none of its code, so a
    checkpoint from a project that is not installed still yields its weights and config.
    """
    is_zip = fmt == "torch-zip" and mappable
    if trust:
        return _trusted_load(path, is_zip), fmt, is_zip, ()
    stand_ins: dict[str, type] = {}
    while True:
        try:
            with torch.serialization.safe_globals([(c, n) for n, c in stand_ins.items()]), \
                    _quietly():
                # mmap keeps the weights in the page cache instead of copying them into RAM.
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
            return obj, fmt, is_zip, tuple(stand_ins)
        except pickle.UnpicklingError as exc:
            name = _unsupported_global(str(exc))
            if name is None or name in stand_ins or len(stand_ins) >= _MAX_STAND_INS:
                raise _unpickling_error(path, exc) from None
            stand_ins[name] = stand_in_class(name)
        except Exception as exc:  # recognised as torch's format: a failure is the file's
            raise _corrupt(path, exc) from None


def _trusted_load(path: Path, is_zip: bool) -> Any:
    try:
        with _quietly():
            return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
    except ModuleNotFoundError as exc:
        raise CheckpointError(
            f"{path} pickles objects from module {exc.name!r}, which is not importable: make "
            "the source of the project that saved it importable (PYTHONPATH), or leave out "
            "--trust-checkpoint to read its data without running its code"
        ) from None
    except Exception as exc:  # recognised as torch's format: a failure is the file's
        raise _corrupt(path, exc) from None


_MAX_STAND_INS = 64


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """torch warns about what a file holds (TypedStorage of quantized tensors, deprecated
    kinds) while loading it: the file's business, said in our own words or not at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class StandIn:
    """Holds the data of a pickled object whose class is not loaded; runs nothing."""

    pickled_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state, slots = state
            self.__dict__.update(slots)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.pickled_name}>"


def stand_in_class(name: str) -> type:
    module, _, qualname = name.rpartition(".")
    return type(qualname, (StandIn,), {"pickled_name": name, "__module__": module or "pickled"})


def attributes(obj: Any) -> dict[str, Any] | None:
    """A config-like object's data: a dict as is, else its attributes (stand-ins included)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (str, bytes, int, float, list, tuple, set, torch.Tensor)) or obj is None:
        return None
    values = getattr(obj, "__dict__", None)
    return {k: v for k, v in values.items() if not k.startswith("_")} if values else None


def _unsupported_global(message: str) -> str | None:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return found.group(1) if found else None


def _unpickling_error(path: Path, exc: Exception) -> CheckpointError:
    message = str(exc)
    blocked = re.search(r"unsupported GLOBAL ([\w.]+) whose module \w+ is blocked", message)
    if blocked:
        return UnsafeCheckpointError(
            f"{path} is unsafe: its pickle calls {blocked.group(1)} (it would run code on "
            "load); refused"
        )
    return _corrupt(path, exc)


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    # torch puts the reason on the line after "WeightsUnpickler error:" (2.13).
    reason = re.search(r"WeightsUnpickler error:\s*(\S.*)", str(exc))
    return CheckpointError(
        f"{path} cannot be read as a PyTorch checkpoint (truncated, corrupt or not a "
        f"checkpoint): {reason.group(1)[:200] if reason else _first_line(exc)}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def find_state_dict(obj: Any, path: Path | str = "checkpoint") -> tuple[StateDict, str]:
    """Return the largest mapping of names to tensors inside `obj` and where it was.

    Looks at the top level, the usual keys (`model`, `state_dict`, `module`,
    `model_state_dict`, ...) and nested dicts; a pickled `nn.Module` gives its
    `state_dict()`, and so does the stand-in of one whose class was not loaded.
    """
    quantized = dynamically_quantized(obj)
    if quantized:
        raise CheckpointError(
            f"{path} is a dynamically quantized checkpoint (torch.ao.quantization."
            f"quantize_dynamic: packed int8 weights at {quantized}), which no fresh encoder "
            "can hold; extract from the float checkpoint it came from")
    candidates: list[tuple[int, int, StateDict, str]] = []
    _collect_state_dicts(obj, "checkpoint", 0, candidates)
    if not candidates:
        raise CheckpointError(f"{path} holds no state dict (no mapping of names to tensors found)")
    # Most tensors wins; among equals, the more conventional key, then the shallower.
    candidates.sort(key=lambda c: (-c[0], c[1], c[3].count("[")))
    _, _, state_dict, location = candidates[0]
    return state_dict, location


def _collect_state_dicts(obj: Any, where: str, depth: int, out: list) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, torch.nn.Module):
        out.append((len(obj.state_dict()), 0, dict(obj.state_dict()), f"{where}.state_dict()"))
        return
    if isinstance(obj, StandIn) and "_modules" in obj.__dict__:
        state_dict = _module_state_dict(obj)
        out.append((len(state_dict), 0, state_dict, f"{where}.state_dict()"))
        return
    if isinstance(obj, StandIn):
        obj = obj.__dict__
    if not isinstance(obj, Mapping):
        return
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    # A few non-tensor entries (e.g. `_extra_state`) still make a state dict.
    if tensors and len(tensors) >= 0.9 * len(obj):
        key = where.rsplit("['", 1)[-1].rstrip("']")
        rank = _STATE_DICT_KEYS.index(key) if key in _STATE_DICT_KEYS else len(_STATE_DICT_KEYS)
        out.append((len(tensors), rank, tensors, "top level" if depth == 0 else where))
        return
    for key, value in obj.items():
        if isinstance(key, str):
            _collect_state_dicts(value, f"{where}[{key!r}]", depth + 1, out)


_QUANTIZED_MODULES = ("torch.ao.nn.quantized.dynamic.", "torch.nn.quantized.dynamic.")
_PACKED = "_packed_params._packed_params"  # quantize_dynamic's Linear: (int8 weight, bias)
_MAX_MODULES = 100_000  # a pickled model's modules, walked once each (a pickle may loop)
_MAX_CONFIGS = 16


def dynamically_quantized(obj: Any) -> str | None:
    """Where `obj` holds `quantize_dynamic`'s packed weights (a state-dict key, or a
    quantized module of a pickled model, loaded or stand-in), else None."""
    for where, item in _walk(obj, modules_only=False):
        if _is_module(item):
            name = (item.pickled_name if isinstance(item, StandIn)
                    else f"{type(item).__module__}.{type(item).__qualname__}")
            if name.startswith(_QUANTIZED_MODULES):
                return f"{where} ({name})"
        elif isinstance(item, Mapping):
            packed = next((k for k in item if isinstance(k, str) and k.endswith(_PACKED)), None)
            if packed is not None:
                return packed
    return None


def module_configs(obj: Any) -> dict[str, Any]:
    """The `config` objects a pickled model and its submodules hold (`model.config`,
    `model.bert.config`), by where they sit, each once (its shallowest place)."""
    found: dict[str, Any] = {}
    for where, module in _walk(obj, modules_only=True):
        config = module.__dict__.get("config")
        if config is not None and not _is_module(config) and all(
                c is not config for c in found.values()):
            found[f"{where}.config"] = config
            if len(found) >= _MAX_CONFIGS:
                break
    return found


def _walk(obj: Any, modules_only: bool) -> Iterator[tuple[str, Any]]:
    """Breadth first: `obj`, the modules it holds (loaded or stand-ins) at any depth, and
    (unless `modules_only`) the mappings it nests; each once, however a pickle links them."""
    queue: deque[tuple[str, Any, int]] = deque([("checkpoint", obj, 0)])
    seen: set[int] = set()
    while queue and len(seen) < _MAX_MODULES:
        where, item, depth = queue.popleft()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if _is_module(item):
            yield where, item
            children = item.__dict__.get("_modules") or {}
            queue += [(f"{where}.{name}", child, depth) for name, child in children.items()
                      if isinstance(name, str) and _is_module(child)]
        elif isinstance(item, Mapping) and depth <= _MAX_DEPTH:
            if not modules_only:
                yield where, item
            queue += [(f"{where}[{key!r}]", value, depth + 1) for key, value in item.items()
                      if isinstance(key, str) and (isinstance(value, Mapping) or _is_module(value))]


def _is_module(obj: Any) -> bool:
    return isinstance(obj, torch.nn.Module) or (
        isinstance(obj, StandIn) and isinstance(obj.__dict__.get("_modules"), Mapping))


def _module_state_dict(module: StandIn, prefix: str = "",
                       ancestors: frozenset[int] = frozenset()) -> StateDict:
    """What `state_dict()` would give for a pickled module read as a stand-in. A module
    shared by two parents is listed under both, as torch lists it; one that holds its
    own ancestor (a pickle may link it so) is not followed into that loop."""
    ancestors = ancestors | {id(module)}
    found: StateDict = {}
    for kind in ("_parameters", "_buffers"):
        for name, tensor in (module.__dict__.get(kind) or {}).items():
            if isinstance(tensor, torch.Tensor) and name not in module.__dict__.get(
                "_non_persistent_buffers_set", ()
            ):
                found[prefix + name] = tensor
    for name, child in (module.__dict__.get("_modules") or {}).items():
        if isinstance(child, StandIn) and id(child) not in ancestors:
            found.update(_module_state_dict(child, f"{prefix}{name}.", ancestors))
    return found


def _extra_entries(obj: Any, state_dict: StateDict) -> dict[str, Any]:
    """The checkpoint's top-level entries other than the state dict (config, vocabs, ...)."""
    if not isinstance(obj, Mapping):
        return {}
    return {
        k: v
        for k, v in obj.items()
        if isinstance(k, str)
        and v is not state_dict
        and not _is_tensor_mapping(v)
        and not isinstance(v, torch.Tensor)
    }


def _is_tensor_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(v, torch.Tensor) for v in value.values())


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """The entries under `prefix`, with the prefix removed (empty if none)."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def refuse_unusable(weights: StateDict, prefix: str = "") -> None:
    """Refuse encoder weights no fresh model can take, all named at once: tensors without
    data (meta), quantized or complex ones, and integer or boolean ones where a model
    has floating-point weights (only position and token-type id buffers are integers).

    Raises:
        CheckpointError: the first such key with its dtype, and how many there are.
    """
    found = [(prefix + key, why) for key, tensor in weights.items()
             if (why := _unusable(key, tensor))]
    if not found:
        return
    key, why = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    advice = ("this checkpoint is quantized: use the float checkpoint it came from"
              if any("quantized" in w for _, w in found) else
              "an encoder's weights are real floating-point tensors")
    raise CheckpointError(f"encoder weight {key} is {why}{more}; {advice}")


def _unusable(key: str, tensor: torch.Tensor) -> str | None:
    dtype = str(tensor.dtype).removeprefix("torch.")
    if tensor.is_quantized:
        return f"quantized ({dtype})"
    if tensor.is_meta:
        return f"a meta tensor ({dtype}, shape {list(tensor.shape)}): it holds no data"
    if tensor.is_complex():
        return f"complex ({dtype})"
    if tensor.is_floating_point():
        return None
    if dtype in ("int8", "uint8", "int4", "uint4"):
        return f"{dtype} (quantized)"
    if tensor.dtype != torch.bool and key.endswith(("position_ids", "token_type_ids")):
        return None
    return f"{dtype}, not floating-point"
