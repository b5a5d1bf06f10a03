"""Export a fresh encoder to ONNX with dynamic batch and sequence axes, or refuse it.

The dummy sizes (`export_inputs`), exporter and opset go into `metadata_props`, so a later
check can recognise a frozen dummy value; a dim the exporter made static is refused.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from transformers import PretrainedConfig, PreTrainedModel

from .errors import UnexportableError
from .export_inputs import (
    EncoderWrapper,
    choose_dummy_sizes,
    dummy_inputs,
    input_names_for,
    output_names_for,
)

EXPORTERS = ("dynamo", "torchscript")
METADATA_PREFIX = "subgraft."
# Weights past this size go to external data (protobuf cannot hold 2 GiB).
EXTERNAL_DATA_BYTES = 1 << 30


@dataclass
class ExportSettings:
    """How a model was exported; also written into the ONNX `metadata_props`."""

    exporter: str
    opset: int
    dummy_batch: int
    dummy_sequence: int
    input_names: list[str]
    output_names: list[str]
    external_data: bool
    attn_implementation: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metadata(self) -> dict[str, str]:
        return {
            METADATA_PREFIX + "exporter": self.exporter,
            METADATA_PREFIX + "opset": str(self.opset),
            METADATA_PREFIX + "dummy_batch": str(self.dummy_batch),
            METADATA_PREFIX + "dummy_sequence": str(self.dummy_sequence),
            METADATA_PREFIX + "input_names": ",".join(self.input_names),
            METADATA_PREFIX + "dynamic_axes": "batch,sequence",
        }


def refuse_unexportable(config: PretrainedConfig) -> None:
    """Refuse settings whose behaviour an ONNX graph cannot follow, before any work.

    Raises:
        UnexportableError: BigBird's block-sparse attention chooses full or sparse
            attention by sequence length in Python; the graph would keep one branch.
    """
    if config.model_type == "big_bird" and getattr(config, "attention_type", "") == "block_sparse":
        longest = (5 + 2 * config.num_random_blocks) * config.block_size
        raise UnexportableError(
            "big_bird with attention_type='block_sparse' switches between full attention (up "
            f"to {longest} tokens) and block-sparse attention (longer) in Python, which one ONNX "
            "graph cannot do; to export full attention, exact up to that length, pass --set "
            "attention_type=original_full"
        )


def export_onnx(
    model: PreTrainedModel,
    path: str | Path,
    exporter: str = "dynamo",
    opset: int | None = None,
    hidden_states: bool = False,
    external_data: bool | None = None,
) -> ExportSettings:
    """Export `model` to `path` with dynamic `batch` and `sequence` axes.

    Args:
        exporter: "dynamo" (torch.export-based, the default) or "torchscript".
        opset: ONNX opset; None keeps the exporter's default.
        hidden_states: also output every layer's hidden states (`hidden_states.N`).
        external_data: force weights into `<path>.data`; None decides by size.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose one of {EXPORTERS}")
    path = Path(path)
    input_names = input_names_for(model)
    output_names = output_names_for(model, hidden_states)
    batch, sequence = choose_dummy_sizes(model.config)
    inputs = dummy_inputs(model.config, input_names, batch, sequence)
    if external_data is None:
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        external_data = size > EXTERNAL_DATA_BYTES
    wrapper = EncoderWrapper(model, input_names, hidden_states).eval()
    settings = ExportSettings(
        exporter,
        opset or 0,
        batch,
        sequence,
        input_names,
        output_names,
        external_data,
        getattr(model.config, "_attn_implementation", None),
    )
    with _quiet(settings.warnings), torch.no_grad():
        try:
            if exporter == "dynamo":
                _export_dynamo(wrapper, tuple(inputs.values()), path, settings, opset)
            else:
                _export_torchscript(wrapper, tuple(inputs.values()), path, settings, opset)
        except torch.onnx.OnnxExporterError as exc:
            raise UnexportableError(
                f"{model.config.model_type} cannot be exported with dynamic batch and sequence by "
                f"the {exporter} exporter: {exporter_reason(exc)}"
            ) from None
    return settings


def exporter_reason(exc: BaseException) -> str:
    """The cause torch.onnx buries in its message, and the model line that raised it."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    summary = re.search(r"## Exception summary\s*\n\s*(.+)", text)
    reason = summary.group(1) if summary else text.strip().splitlines()[0]
    reason = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", reason).split(" (unhinted")[0]
    site = re.search(r'following call raised this error:\s*\n\s*File "([^"]+)", line (\d+), '
                     r"in (\w+)", text)
    where = f" (in {Path(site.group(1)).name}:{site.group(2)}, {site.group(3)})" if site else ""
    return reason[:240] + where


def _export_dynamo(
    wrapper: torch.nn.Module, args: tuple, path: Path, settings: ExportSettings, opset: int | None
) -> None:
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    # The wrapper takes *inputs, which torch.export sees as one argument: hence the nesting.
    program = torch.onnx.export(
        wrapper,
        args,
        None,
        input_names=settings.input_names,
        output_names=settings.output_names,
        dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in args),),
        opset_version=opset,
        dynamo=True,
        verbose=False,
        optimize=True,
    )
    _refuse_specialised(program.model.graph, wrapper.model.config.model_type)
    settings.opset = program.model.opset_imports[""]
    program.model.metadata_props.update(settings.metadata())
    _forget_inner_shapes(program.model.graph)
    program.save(path, external_data=settings.external_data)


def _refuse_specialised(graph: Any, model_type: str) -> None:
    """torch.export applies its own "suggested fixes" and silently makes a dim static
    where the model's Python code needs a concrete size (Funnel's pooling)."""
    for value in graph.inputs:
        static = [(axis, dim) for axis, dim in enumerate(list(value.shape or ())[:2])
                  if isinstance(dim, int)]
        if static:
            axis, dim = static[0]
            raise UnexportableError(
                f"{model_type} cannot be exported with dynamic batch and sequence by the dynamo "
                f"exporter: it specialised {value.name} {['batch', 'sequence'][axis]} to the "
                f"dummy's {dim} (the model computes sizes from it in Python)"
            )


def _forget_inner_shapes(graph: Any) -> None:
    """Drop the shapes the exporter recorded on intermediate tensors (inputs and outputs
    keep theirs). With them onnxruntime (1.32) can prove each residual Add's inputs
    alike and fuses Add + LayerNormalization into SkipLayerNormalization at load, whose
    CPU kernel is 5x slower than the pair: bert-base 8x128 ran 572 ms against 528 ms.
    """
    outputs = set(graph.outputs)
    for node in graph.all_nodes():
        for value in node.outputs:
            if value not in outputs:
                value.shape = None


def _export_torchscript(
    wrapper: torch.nn.Module, args: tuple, path: Path, settings: ExportSettings, opset: int | None
) -> None:
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        wrapper,
        args,
        str(path),
        input_names=settings.input_names,
        output_names=settings.output_names,
        opset_version=opset or 17,
        dynamo=False,
        dynamic_axes={
            **{n: axes for n in settings.input_names},
            **{n: axes for n in settings.output_names if n != "pooler_output"},
            **({"pooler_output": {0: "batch"}} if "pooler_output" in settings.output_names else {}),
        },
        do_constant_folding=True,
    )
    proto = onnx.load(str(path))
    settings.opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    for key, value in settings.metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(
        proto, str(path), save_as_external_data=settings.external_data, location=path.name + ".data"
    )


@contextlib.contextmanager
def _quiet(collected: list[str]):
    """Keep the exporters' progress lines and warnings off the console, but keep warnings."""
    loggers = [
        logging.getLogger(n)
        for n in (
            "torch.onnx",
            "torch.export",
            "torch._export",
            "onnxscript",
            "torch.fx",
            "torch._dynamo",
            "transformers",
        )
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        # torch.export logs the whole graph when it fails; the exception says enough.
        lg.setLevel(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            _native_stdout_discarded(),
        ):
            warnings.simplefilter("always")
            yield
        seen = dict.fromkeys(
            f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught
        )
        collected.extend(list(seen)[:20])
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _native_stdout_discarded():
    """The TorchScript exporter prints its whole graph from C++ when an operator is
    unsupported (FNet's fft_fftn): point file descriptor 1 at /dev/null meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
