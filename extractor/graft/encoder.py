"""An extractor output's ONNX encoder as a drop-in for the Hugging Face encoder, in onnxruntime.

`OnnxEncoder` takes the same forward arguments (positional in the model's own order, or by
keyword), the same defaults (no attention mask means all ones, no token types means zeros),
and returns the same output class holding torch tensors; it has the saved `config`. Inputs
are bound to onnxruntime by their data pointers and outputs written straight into torch
tensors, so nothing is copied where the dtype already fits. What the graph cannot do
(embeddings given directly, attention maps, gradients, dropout) is refused with one line,
never approximated.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput, ModelOutput

from ..errors import GraftError
from ..resolve.config_fit import saved_config
from ..resolve.encoders import encoder_class
from ..tiers.runtimes import checked_session

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
