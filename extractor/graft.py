"""Put an exported encoder back into the live model it came from, in onnxruntime.

`OnnxEncoder` stands in for the Hugging Face encoder: the same forward
arguments (positional in the model's own order, or by keyword), the same
defaults (no attention mask means all ones, no token types means zeros), the
same output class holding torch tensors, and the saved `config`. Inputs are
bound to onnxruntime by their data pointers and outputs are written straight
into torch tensors, so nothing is copied where the dtype already fits. What
the graph cannot do (embeddings given directly, attention maps, gradients,
dropout) is refused with one line, never approximated.

`graft` swaps it in for a named sub-module, `verify_graft` runs the parent's
own forward both ways and compares every output the parent returns. A graft
returns the outputs the replaced module returns, in its positions (parents such
as OneIE read `outputs[2]`): an output the file has and the module lacks is
dropped; one the module has and the file lacks refuses the graft.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput, ModelOutput

from .errors import GraftError
from .resolve.architecture import saved_config
from .resolve.encoders import encoder_class
from .tiers.runtimes import checked_session

ONNX_FILES = ("model.onnx", "model.optimized.onnx", "model.int8.onnx")
# Arguments the exported graph has no input for: refused unless None (or False).
_UNSUPPORTED = ("inputs_embeds", "head_mask", "position_ids", "encoder_hidden_states",
                "encoder_attention_mask", "past_key_values", "cache", "langs", "lengths")
_IGNORED = ("use_cache",)  # an encoder has no cache; None and False change nothing
# Types whose position ids start after the padding id (RoBERTa's offset of 2).
_PADDING_OFFSET = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "xlm-roberta-xl",
                   "mpnet", "longformer")
_NUMPY = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
          "tensor(bool)": np.bool_}
_TORCH = {np.int64: torch.int64, np.int32: torch.int32, np.float32: torch.float32,
          np.bool_: torch.bool}


class OnnxEncoder(torch.nn.Module):
    """An extractor output directory's ONNX encoder as a drop-in `torch.nn.Module`.

    Args:
        directory: what `python -m extractor` wrote (config.json and the ONNX files).
        file: `model.onnx`, `model.optimized.onnx` or `model.int8.onnx`.
        threads: onnxruntime's intra-op threads (default: onnxruntime's choice).
        providers: onnxruntime execution providers (default: CPU).
        spinning: let onnxruntime's worker threads spin after each run (its default).
            Off here: in a model whose heads run in PyTorch right after the encoder,
            spinning threads take the cores from them (bert-base int8 composite at
            1x128: 53.3 -> 48.7 ms), though the encoder alone is faster with it.
    """

    def __init__(
        self,
        directory: str | Path,
        file: str = "model.onnx",
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        spinning: bool = False,
    ) -> None:
        super().__init__()
        import onnxruntime as ort

        self.directory = Path(directory)
        if self.directory.suffix == ".onnx" and self.directory.is_file():  # the file itself
            self.directory, file = self.directory.parent, self.directory.name
        path = self.directory / file
        if not path.is_file() or not (self.directory / "config.json").is_file():
            raise GraftError(f"{path} is not an extractor output's ONNX file (expected "
                             f"config.json and one of {', '.join(ONNX_FILES)} in {directory})")
        self.config = saved_config(self.directory)  # checked against its weights first
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.session = checked_session(path, options, self.providers)
        self.file = file
        self._inputs = {i.name: _NUMPY[i.type] for i in self.session.get_inputs()}
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._width = {o.name: o.shape[-1] for o in self.session.get_outputs()}
        # False where the module it stands in for was built without a pooler (graft sets it).
        self.returns_pooler = self.has_pooler
        model_class = encoder_class(self.config)
        self._order = [p for p in inspect.signature(model_class.forward).parameters
                       if p not in ("self", "kwargs")]
        self._output_class = _output_class(model_class)
        self.max_sequence = max_sequence(self.config)
        self.eval()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def has_hidden_states(self) -> bool:
        return "hidden_states.0" in self._outputs

    @property
    def has_pooler(self) -> bool:
        return "pooler_output" in self._outputs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        call = self._bind(args, kwargs)
        if self.training:
            raise GraftError(
                "the ONNX encoder runs in inference only (no dropout, no gradients): call "
                ".eval() on it; to train the rest of the model, parent.train() then "
                "parent.<encoder>.eval()"
            )
        hidden = call.pop("output_hidden_states", None)
        hidden = self.config.output_hidden_states if hidden is None else bool(hidden)
        if hidden and not self.has_hidden_states:
            raise GraftError(f"output_hidden_states=True, but {self.file} was exported without "
                             "hidden states: extract again with --hidden-states")
        return_dict = call.pop("return_dict", None)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self._run(self._feeds(call), hidden)
        result = self._output_class(**outputs)
        return result if return_dict else result.to_tuple()

    def _bind(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self._order):
            raise GraftError(f"{len(args)} positional arguments; the encoder takes at most "
                             f"{len(self._order)} ({', '.join(self._order)})")
        call = dict(zip(self._order, args, strict=False))
        for name, value in kwargs.items():
            if name in call:
                raise GraftError(f"got multiple values for argument {name!r}")
            call[name] = value
        if call.get("output_attentions"):
            raise GraftError("output_attentions=True: the ONNX encoder returns no attention "
                             "maps")
        call.pop("output_attentions", None)
        for name in _IGNORED:
            call.pop(name, None)
        for name in list(call):
            if name in self._inputs or name in ("output_hidden_states", "return_dict"):
                continue
            value = call.pop(name)
            if name == "token_type_ids" and (value is None or not torch.any(value)):
                continue  # a model exported without token types fills zeros itself
            if value is not None:
                why = "has no input for it" if name in _UNSUPPORTED else "does not take it"
                raise GraftError(f"{name} given, but the exported graph {why}; pass input_ids "
                                 "(and attention_mask) only")
        return call

    def _feeds(self, call: dict[str, Any]) -> dict[str, torch.Tensor]:
        ids = call.get("input_ids")
        if not isinstance(ids, torch.Tensor):
            raise GraftError("input_ids must be a tensor of token ids (inputs_embeds cannot "
                             "be exported)")
        if ids.dim() != 2:
            raise GraftError(f"input_ids must be [batch, sequence]; got {list(ids.shape)}")
        if self.max_sequence and ids.shape[1] > self.max_sequence:
            raise GraftError(f"sequence of {ids.shape[1]} tokens; the model has positions for "
                             f"{self.max_sequence}")
        defaults = {"attention_mask": torch.ones_like, "token_type_ids": torch.zeros_like}
        feeds = {}
        for name, dtype in self._inputs.items():
            value = call.get(name)
            if value is None:
                value = defaults[name](ids)
            if not isinstance(value, torch.Tensor):
                raise GraftError(f"{name} must be a tensor, got {type(value).__name__}")
            if value.device.type != "cpu":
                raise GraftError(
                    f"{name} is on {value.device}, but the session runs on "
                    f"{', '.join(self.providers)}: move the inputs to the CPU, or pass "
                    "providers=['CUDAExecutionProvider'] with onnxruntime-gpu installed"
                )
            if value.requires_grad:
                raise GraftError(f"{name} requires gradients; onnxruntime cannot backpropagate")
            if tuple(value.shape) != tuple(ids.shape):
                raise GraftError(f"{name} is {list(value.shape)}, input_ids "
                                 f"{list(ids.shape)}")
            # A view when the dtype fits and the memory is contiguous; a copy otherwise.
            feeds[name] = value.to(_TORCH[dtype]).contiguous()
        return feeds

    def _run(self, feeds: dict[str, torch.Tensor], hidden: bool) -> dict[str, Any]:
        batch, sequence = feeds["input_ids"].shape
        binding = self.session.io_binding()
        for name, tensor in feeds.items():
            binding.bind_input(name, "cpu", 0, self._inputs[name], tuple(tensor.shape),
                               tensor.data_ptr())
        results: dict[str, torch.Tensor] = {}
        for name in self._outputs:
            if (name.startswith("hidden_states.") and not hidden) or (
                    name == "pooler_output" and not self.returns_pooler):
                continue
            shape = (batch, self._width[name]) if name == "pooler_output" else (
                batch, sequence, self._width[name])
            results[name] = torch.empty(shape, dtype=torch.float32)
            binding.bind_output(name, "cpu", 0, np.float32, shape, results[name].data_ptr())
        self.session.run_with_iobinding(binding)
        outputs: dict[str, Any] = {"last_hidden_state": results["last_hidden_state"]}
        if "pooler_output" in results:
            outputs["pooler_output"] = results["pooler_output"]
        if hidden:
            count = sum(n.startswith("hidden_states.") for n in results)
            outputs["hidden_states"] = tuple(results[f"hidden_states.{i}"] for i in range(count))
        return outputs

    def extra_repr(self) -> str:
        return f"{self.directory / self.file}, {self.config.model_type}, {self.providers[0]}"


def max_sequence(config: Any) -> int | None:
    """The longest sequence the model has positions for (None: relative positions only)."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or config.model_type in ("t5", "mt5", "umt5"):
        return None
    if config.model_type in _PADDING_OFFSET:
        return positions - (getattr(config, "pad_token_id", 1) or 0) - 1
    return positions


def _output_class(model_class: type) -> type:
    """The ModelOutput class the model's forward returns (from its annotation)."""
    try:
        hint = typing.get_type_hints(model_class.forward).get("return")
    except Exception:  # annotations that do not resolve: the common base
        return BaseModelOutput
    for candidate in (*typing.get_args(hint), hint):
        if isinstance(candidate, type) and issubclass(candidate, ModelOutput):
            return candidate
    return BaseModelOutput


def graft(
    parent: torch.nn.Module,
    name: str,
    directory: str | Path | OnnxEncoder,
    file: str = "model.onnx",
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> torch.nn.Module:
    """Replace `parent.<name>` (a dotted path, e.g. `model.encoder`) by the ONNX encoder.

    The replaced module's output settings (`output_hidden_states`, `return_dict`)
    carry over to the stand-in's config, and its outputs' positions are kept (no
    pooler there: none from the stand-in), so the parent sees the outputs it expects.
    Refused when the file lacks an output the module returns.

    Returns:
        The module that was replaced; `ungraft(parent, name, it)` puts it back.
    """
    owner, attribute, original = _locate(parent, name)
    encoder = directory if isinstance(directory, OnnxEncoder) else OnnxEncoder(
        directory, file, threads, providers)
    refusal = output_mismatch(original, encoder, name)
    if refusal:
        raise GraftError(refusal)
    settings = getattr(original, "config", None)
    encoder.returns_pooler = encoder.has_pooler and _pools(original) is not False
    for flag in ("output_hidden_states", "return_dict"):
        if settings is not None and hasattr(settings, flag):
            setattr(encoder.config, flag, getattr(settings, flag))
    setattr(owner, attribute, encoder)
    return original


def output_mismatch(original: torch.nn.Module, encoder: OnnxEncoder, name: str) -> str | None:
    """Why `encoder` cannot return what `original` returns, in the same positions (None: it can).

    `ModelOutput.to_tuple()` drops absent fields, so a pooler_output the file lacks moves
    every later output up one place: OneIE's `outputs[2]` (hidden states) is gone.
    """
    settings = getattr(original, "config", None)
    hidden = bool(getattr(settings, "output_hidden_states", False))
    path = encoder.directory / encoder.file
    if hidden and not encoder.has_hidden_states:
        return (f"{name} returns hidden_states (its config.output_hidden_states), but {path} "
                "was exported without them: extract again with --hidden-states")
    if _pools(original) and not encoder.has_pooler:
        moved = ("its outputs[2] (hidden_states) would be at [1]" if hidden
                 else "its outputs[1] would be missing")
        return (f"{name} has a pooler, but {path} has no pooler_output (exported with "
                f"--no-pooler, or from weights without one): {moved}; extract again without "
                "--no-pooler")
    return None


def _pools(module: torch.nn.Module) -> bool | None:
    """Whether the module returns pooler_output (None: it has no `pooler` to tell by).

    Hugging Face encoders built with `add_pooling_layer=False` hold `pooler = None`.
    """
    if isinstance(module, OnnxEncoder):
        return module.returns_pooler
    if not hasattr(module, "pooler"):
        return None
    return module.pooler is not None


def ungraft(parent: torch.nn.Module, name: str, original: torch.nn.Module) -> None:
    owner, attribute, _ = _locate(parent, name)
    setattr(owner, attribute, original)


@contextlib.contextmanager
def grafted(parent: torch.nn.Module, name: str, directory: str | Path | OnnxEncoder,
            **options: Any) -> Iterator[OnnxEncoder]:
    """`with grafted(model, "bert", "out/") as encoder:` the original comes back after."""
    original = graft(parent, name, directory, **options)
    try:
        yield _locate(parent, name)[2]
    finally:
        ungraft(parent, name, original)


def _locate(parent: torch.nn.Module, name: str) -> tuple[torch.nn.Module, str, torch.nn.Module]:
    path, _, attribute = name.rpartition(".")
    try:
        owner = parent.get_submodule(path) if path else parent
        module = getattr(owner, attribute)
    except AttributeError:
        raise GraftError(f"{type(parent).__name__} has no sub-module {name!r}") from None
    if not isinstance(module, torch.nn.Module):
        raise GraftError(f"{name!r} of {type(parent).__name__} is not a module")
    return owner, attribute, module


@dataclass(frozen=True)
class OutputComparison:
    """One output of the parent: the original against the graft, over every batch."""

    name: str  # e.g. "['entity_logits']", "[0]", ".logits"
    kind: str  # "tensor" or "labels" (integers, or non-tensor values compared exactly)
    max_abs: float
    max_rel: float
    agreement: float | None  # share of equal predicted labels (argmax, or exact values)
    ok: bool


@dataclass
class GraftReport:
    """What `verify_graft` measured; `ok` when every output is within tolerance."""

    file: str
    batches: int
    atol: float
    rtol: float
    results: list[OutputComparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "batches": self.batches, "atol": self.atol,
                "rtol": self.rtol, "ok": self.ok,
                "results": [dataclasses.asdict(r) for r in self.results]}


def verify_graft(
    parent: torch.nn.Module,
    name: str,
    directory: str | Path | OnnxEncoder,
    batches: Sequence[Any],
    file: str = "model.onnx",
    atol: float = 1e-4,
    rtol: float = 1e-4,
    method: str = "forward",
) -> GraftReport:
    """Run the parent's own `method` on each batch with its sub-module and with the graft.

    A batch is a dict (keyword arguments), a tuple or list (positional arguments) or
    one tensor. Every tensor in what the parent returns (nested in tuples, lists,
    dicts or dataclasses) is compared; float tensors whose last dim is at least 2 are
    read as logits and their argmax agreement is reported too; integers and other
    values (CRF label paths) must be equal.
    """
    if not batches:
        raise GraftError("no batches to compare on")
    encoder = directory if isinstance(directory, OnnxEncoder) else OnnxEncoder(directory, file)
    refusal = output_mismatch(_locate(parent, name)[2], encoder, name)
    if refusal:  # before the first pass: graft would refuse it after
        raise GraftError(refusal)
    parent.eval()
    run = getattr(parent, method)
    with torch.no_grad():
        expected = [_flatten(_call(run, batch)) for batch in batches]
        with grafted(parent, name, encoder):
            got = [_flatten(_call(run, batch)) for batch in batches]
    report = GraftReport(encoder.file, len(batches), atol, rtol)
    for key in expected[0]:
        pairs = [(e[key], g.get(key)) for e, g in zip(expected, got, strict=True)]
        report.results.append(_compare(key, pairs, atol, rtol))
    return report


def _call(run: Any, batch: Any) -> Any:
    if isinstance(batch, dict):
        return run(**batch)
    if isinstance(batch, (tuple, list)):
        return run(*batch)
    return run(batch)


def _flatten(value: Any, name: str = "") -> dict[str, Any]:
    if isinstance(value, torch.Tensor):
        return {name or "output": value}
    if isinstance(value, ModelOutput):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{name}.{key}")
                .items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: v for f in dataclasses.fields(value)
                for k, v in _flatten(getattr(value, f.name), f"{name}.{f.name}").items()}
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in _flatten(item, f"{name}[{key!r}]").items()}
    if isinstance(value, (tuple, list)) and any(_has_tensor(v) for v in value):
        return {k: v for i, item in enumerate(value)
                for k, v in _flatten(item, f"{name}[{i}]").items()}
    return {name or "output": value}


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return isinstance(value, ModelOutput) or dataclasses.is_dataclass(value)


def _compare(name: str, pairs: list[tuple[Any, Any]], atol: float, rtol: float
             ) -> OutputComparison:
    tensors = all(isinstance(e, torch.Tensor) for e, _ in pairs)
    if not tensors or not pairs[0][0].is_floating_point():
        same = [_equal(e, g) for e, g in pairs]
        agreement = float(np.mean([s for group in same for s in group])) if same else 1.0
        return OutputComparison(name, "labels", math.nan, math.nan, agreement,
                                agreement == 1.0)
    worst_abs = worst_rel = 0.0
    agree: list[np.ndarray] = []
    ok = True
    for expected, got in pairs:
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return OutputComparison(name, "tensor", math.nan, math.nan, None, False)
        diff = (got.double() - expected.double()).abs()
        magnitude = expected.double().abs()
        worst_abs = max(worst_abs, float(diff.max()) if diff.numel() else 0.0)
        big = magnitude >= 1e-3
        if big.any():
            worst_rel = max(worst_rel, float((diff[big] / magnitude[big]).max()))
        ok = ok and bool((diff <= atol + rtol * magnitude).all())
        if expected.dim() >= 2 and expected.shape[-1] >= 2:
            agree.append((expected.argmax(-1) == got.argmax(-1)).numpy().ravel())
    agreement = float(np.concatenate(agree).mean()) if agree else None
    return OutputComparison(name, "tensor", worst_abs, worst_rel, agreement, ok)


def _equal(expected: Any, got: Any) -> list[bool]:
    """Element-wise equality of label outputs (tensors of ints, nested lists, scalars)."""
    if isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor):
        if expected.shape != got.shape:
            return [False]
        return (expected == got).numpy().ravel().tolist() or [True]
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(expected) != len(got):
            return [False]
        return [s for e, g in zip(expected, got, strict=True) for s in _equal(e, g)] or [True]
    return [expected == got]


def load_factory(spec: str) -> Any:
    """`package.module:function` -> the function (the current directory is importable)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise GraftError(f"--parent {spec!r} is not MODULE:FACTORY")
    import sys

    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GraftError(f"cannot import {module_name!r} for --parent: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise GraftError(f"{module_name} has no callable {attribute!r}")
    return factory
