"""The whole job: checkpoint -> stripped weights -> fresh model -> verified dynamic ONNX.

Each step is a plain function in its own module; this one chains them, stages
every output in a temporary directory, and moves it into place only when the
export passed its parity check.
"""

from __future__ import annotations

import gc
import itertools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from diagnostics import Report as FrozenCheck
from diagnostics import check

from . import __version__
from .architecture import TOKENIZER_FILES, ResolvedConfig, resolve_config
from .checkpoint import Checkpoint, load_checkpoint, strip_prefix
from .export import (
    EncoderWrapper,
    ExportSettings,
    choose_dummy_sizes,
    export_onnx,
    export_saved_model,
    input_names_for,
    output_names_for,
)
from .model import KeyReport, build_model
from .output import REPORT_NAME, TOOL, check_output, commit, default_output, staging_dir, write_json
from .parity import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ParityReport,
    Reference,
    compare_onnx,
    parity_cases,
    reference_outputs,
)
from .prefixes import choose_prefix, guess_model_type

ONNX_NAME = "model.onnx"
ISOLATE_EXPORT_BYTES = 256 << 20
Step = Callable[[str], None]


@dataclass
class ExtractionReport:
    """Everything one run did and measured; `report.json` is its `to_dict()`."""

    source: dict[str, Any]
    prefix: str
    config: ResolvedConfig
    keys: KeyReport
    export: ExportSettings
    parity: ParityReport
    frozen: FrozenCheck  # diagnostics' static check of the exported graph
    output: Path | None = None  # None when nothing was written (verification failed)
    files: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.parity.ok and not self.frozen.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": TOOL,
            "version": __version__,
            "ok": self.ok,
            "source": self.source,
            "prefix": self.prefix,
            "config": self.config.to_dict(),
            "keys": self.keys.to_dict(),
            "export": self.export.to_dict(),
            "parity": self.parity.to_dict(),
            "frozen_shapes": [f["node"] for f in self.frozen.to_dict()["findings"]],
            "output": str(self.output) if self.output else None,
            "files": self.files,
            "seconds": self.seconds,
        }


def extract(
    checkpoint: str | Path,
    prefix: str | None = None,
    output: str | Path | None = None,
    *,
    config_file: str | Path | None = None,
    model: str | Path | None = None,
    trust: bool = False,
    exporter: str = "dynamo",
    opset: int | None = None,
    hidden_states: bool = False,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    force: bool = False,
    isolate_export: bool | None = None,
    step: Step | None = None,
) -> ExtractionReport:
    """Run the whole job and return its report; outputs exist only if `report.ok`.

    Args:
        isolate_export: export in a fresh process from the saved model (default: when
            the weights exceed 256 MiB), so the exporter's caches cannot pin the weights.
        step: called with a short label as each long step starts (for progress).

    Raises:
        ExtractorError: bad input; nothing has been written.
    """
    step = step or (lambda _label: None)
    timer = _Timer()
    path = Path(checkpoint)
    step("loading checkpoint")
    ckpt = load_checkpoint(path, trust=trust)
    chosen = choose_prefix(ckpt.state_dict, prefix)
    weights = strip_prefix(ckpt.state_dict, chosen)
    out_dir = Path(output) if output is not None else default_output(path, chosen)
    inputs = [path] + ([Path(config_file)] if config_file else [])
    check_output(out_dir, inputs, force)
    timer.lap("load")

    step("resolving architecture")
    resolved = resolve_config(weights, ckpt, config_file, model)
    step("building the fresh model")
    encoder, keys = build_model(resolved.config, weights)
    source = _source(ckpt, chosen, weights)
    del weights
    timer.lap("build")

    with staging_dir(out_dir) as staging:
        step("saving the Hugging Face model")
        encoder.save_pretrained(staging)
        _copy_tokenizer(resolved, staging)
        timer.lap("save")

        step("running PyTorch at the parity shapes")
        references = _references(encoder, hidden_states)
        isolate = (
            isolate_export
            if isolate_export is not None
            else (_weight_bytes(encoder) > ISOLATE_EXPORT_BYTES)
        )
        step("exporting to ONNX")
        del ckpt  # its tensors share the encoder's memory map; only the encoder is needed now
        if isolate:
            # Free the model first; the child exports the saved model and takes the
            # exporters' caches (which pin every weight) with it when it exits.
            _release_weights(encoder)
            gc.collect()
            settings = export_saved_model(
                staging, staging / ONNX_NAME, exporter, opset, hidden_states
            )
        else:
            settings = export_onnx(encoder, staging / ONNX_NAME, exporter, opset, hidden_states)
            _release_weights(encoder)
        del encoder
        gc.collect()
        timer.lap("export")

        step("verifying PyTorch against onnxruntime")
        parity = compare_onnx(staging / ONNX_NAME, references, atol, rtol)
        step("checking the graph for frozen shapes")
        frozen = check(staging / ONNX_NAME)
        timer.lap("verify")

        report = ExtractionReport(
            source, chosen, resolved, keys, settings, parity, frozen, seconds=timer.seconds
        )
        if report.ok:
            report.output = out_dir
            report.files = sorted([p.name for p in staging.iterdir()] + [REPORT_NAME])
            write_json(staging / REPORT_NAME, report.to_dict())
            commit(staging, out_dir)
    return report


def _source(ckpt: Checkpoint, prefix: str, weights: dict) -> dict[str, Any]:
    return {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "state_dict_location": ckpt.location,
        "tensors": len(ckpt.state_dict),
        "encoder_tensors": len(weights),
        "encoder_parameters": sum(t.numel() for t in weights.values()),
        "looks_like": guess_model_type(ckpt.state_dict, prefix),
        "trusted": ckpt.trusted,
        "mmap": ckpt.mmap,
    }


def _references(encoder: PreTrainedModel, hidden_states: bool) -> list[Reference]:
    """PyTorch outputs at the parity shapes, for the names and dummy the export will use."""
    input_names = input_names_for(encoder)
    wrapper = EncoderWrapper(encoder, input_names, hidden_states).eval()
    cases = parity_cases(encoder.config, *choose_dummy_sizes(encoder.config))
    return reference_outputs(
        wrapper, encoder.config, input_names, output_names_for(encoder, hidden_states), cases
    )


def _weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.parameters())


def _release_weights(model: torch.nn.Module) -> None:
    """Empty every tensor so its memory goes even where a cache still holds the module."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        tensor.data = torch.empty(0, dtype=tensor.dtype)


def _copy_tokenizer(resolved: ResolvedConfig, staging: Path) -> None:
    if resolved.tokenizer_dir is None:
        return
    for name in TOKENIZER_FILES:
        source = resolved.tokenizer_dir / name
        if source.is_file():
            shutil.copyfile(source, staging / name)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now
