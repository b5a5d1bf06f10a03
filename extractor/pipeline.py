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
from .accuracy import Agreement, text_inputs
from .architecture import ResolvedConfig, resolve_config
from .checkpoint import Checkpoint, load_checkpoint, strip_prefix
from .config_sources import TOKENIZER_FILES
from .errors import ExtractorError
from .export import (
    EncoderWrapper,
    ExportJob,
    ExportSettings,
    choose_dummy_sizes,
    export_saved_model,
    input_names_for,
    output_names_for,
    refuse_unexportable,
    run_export_jobs,
)
from .model import KeyReport, build_model
from .optimize import OPTIMIZED_NAME, OptimizeResult, optimize_onnx
from .output import (
    REPORT_NAME,
    TOOL,
    check_output,
    commit,
    default_output,
    failed_output,
    staging_dir,
    write_json,
)
from .parity import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ParityReport,
    Reference,
    compare_onnx,
    parity_cases,
    reference_outputs,
)
from .prefixes import choose_prefix, encoder_match
from .quantize import INT8_NAME, quantize_within_gate

ONNX_NAME = "model.onnx"
FUSABLE_NAME = "fusable.onnx"  # TorchScript/eager graph that is fused and quantized; not kept
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
    variants: list[Variant] = field(default_factory=list)  # optimized / int8 models
    output: Path | None = None  # None when nothing was written (verification failed)
    files: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.parity.ok and not self.frozen.findings and all(v.ok for v in self.variants)

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
            "variants": [v.to_dict() for v in self.variants],
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
    overrides: dict[str, Any] | None = None,
    trust: bool = False,
    exporter: str = "dynamo",
    opset: int | None = None,
    hidden_states: bool = False,
    pooler: bool = True,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    force: bool = False,
    isolate_export: bool | None = None,
    optimize: bool = False,
    quantize: str | None = None,
    keep_failed: bool = False,
    step: Step | None = None,
) -> ExtractionReport:
    """Run the whole job and return its report; the output exists only if `report.ok`.

    Args:
        overrides: config values to set (`--set NAME=VALUE`); with no config in the
            checkpoint's files, the values shapes cannot tell must be among them.
        pooler: False leaves the checkpoint's pooler out: only `last_hidden_state` (and
            hidden states) are exported.
        isolate_export: export in a fresh process from the saved model (default: when
            the weights exceed 256 MiB), so the exporter's caches cannot pin the weights.
        optimize: also write `model.optimized.onnx` with onnxruntime's transformer
            fusions (exported for fusion: TorchScript, eager attention), parity-checked.
        quantize: "int8": also write `model.int8.onnx` (dynamic int8 of the graph exported
            for fusion), gated on cosine similarity on real text.
        keep_failed: when verification fails, keep the outputs in `<output>.failed`
            (with report.json) to inspect, instead of writing nothing.
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
    resolved = resolve_config(weights, ckpt, config_file, model, overrides=overrides,
                              prefix=chosen)
    refuse_unexportable(resolved.config)
    if quantize is not None and quantize != "int8":
        raise ExtractorError(f"unknown quantization {quantize!r}; only 'int8' is supported")
    if quantize and resolved.tokenizer_dir is None:
        raise ExtractorError("--quantize needs the model's tokenizer for its accuracy gate on "
                             "real text; pass --model DIR (or --config in a directory) that "
                             "holds the tokenizer files")
    step("building the fresh model")
    encoder, keys = build_model(resolved.config, weights, pooler=pooler)
    source = _source(ckpt, chosen, weights)
    del weights
    timer.lap("build")

    with staging_dir(out_dir) as staging:
        step("saving the Hugging Face model")
        encoder.save_pretrained(staging)
        _copy_tokenizer(resolved, staging)
        timer.lap("save")

        step("running PyTorch at the parity shapes")
        # The attention every ONNX file is exported from: sdpa and eager agree on real
        # tokens but not always on padded ones (ModernBERT: 0.04 apart there).
        encoder.set_attn_implementation("eager")
        references = _references(encoder, hidden_states)
        text = _text_reference(encoder, staging) if quantize else None
        isolate = (
            isolate_export
            if isolate_export is not None
            else (_weight_bytes(encoder) > ISOLATE_EXPORT_BYTES)
        )
        step("exporting to ONNX")
        del ckpt  # its tensors share the encoder's memory map; only the encoder is needed now
        settings = _export(encoder, staging, exporter, opset, hidden_states, isolate,
                           fusable=optimize or bool(quantize))
        del encoder
        gc.collect()
        timer.lap("export")

        step("verifying PyTorch against onnxruntime")
        parity = compare_onnx(staging / ONNX_NAME, references, atol, rtol)
        step("checking the graph for frozen shapes")
        frozen = check(staging / ONNX_NAME)
        timer.lap("verify")
        variants = _fast_variants(
            staging, resolved, references, text, optimize, quantize, atol, rtol, step
        )
        if variants:
            timer.lap("optimize")

        report = ExtractionReport(
            source,
            chosen,
            resolved,
            keys,
            settings,
            parity,
            frozen,
            variants,
            seconds=timer.seconds,
        )
        if report.ok or keep_failed:
            # A failed export goes beside the output, never in its place, for inspection.
            target = out_dir if report.ok else failed_output(out_dir)
            if not report.ok:
                check_output(target, inputs, force)  # the output itself was checked up front
            report.output = target
            report.files = sorted([p.name for p in staging.iterdir()] + [REPORT_NAME])
            write_json(staging / REPORT_NAME, report.to_dict())
            commit(staging, target)
    return report


def _source(ckpt: Checkpoint, prefix: str, weights: dict) -> dict[str, Any]:
    return {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "state_dict_location": ckpt.location,
        "tensors": len(ckpt.state_dict),
        "encoder_tensors": len(weights),
        "encoder_parameters": sum(t.numel() for t in weights.values()),
        "looks_like": match.model_types if (match := encoder_match(ckpt.state_dict, prefix))
        else None,
        "trusted": ckpt.trusted,
        "stand_ins": list(ckpt.stand_ins),
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


@dataclass
class Variant:
    """A faster model written beside `model.onnx`, with the check it had to pass."""

    name: str  # "optimized" or "int8"
    file: str
    fused: OptimizeResult | None = None
    parity: ParityReport | None = None
    agreement: Agreement | None = None
    kept_fp32: list[str] = field(default_factory=list)  # int8: nodes the gate kept in fp32
    merged_projections: int = 0  # int8: MatMul groups (query/key/value) merged into one

    @property
    def ok(self) -> bool:
        return (
            (self.fused is None or self.fused.ok)
            and (self.parity is None or self.parity.ok)
            and (self.agreement is None or self.agreement.ok)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "ok": self.ok,
            "fused": self.fused.fused if self.fused else None,
            "parity": self.parity.to_dict() if self.parity else None,
            "accuracy": self.agreement.to_dict() if self.agreement else None,
            "kept_fp32": self.kept_fp32,
            "merged_projections": self.merged_projections,
        }


def _export(
    encoder: PreTrainedModel,
    staging: Path,
    exporter: str,
    opset: int | None,
    hidden_states: bool,
    isolate: bool,
    fusable: bool,
) -> ExportSettings:
    """`model.onnx`, plus the graph the optimizer can fuse; the weights are freed after.

    Both are exported from eager attention: PyTorch's sdpa path exports with a Where and
    an IsNaN guard around every softmax (bert-base in onnxruntime: 5-7% slower).
    """
    jobs = [ExportJob(str(staging / ONNX_NAME), exporter, opset, hidden_states,
                      attn_implementation="eager")]
    if fusable:
        jobs.append(ExportJob(str(staging / FUSABLE_NAME), "torchscript", opset, hidden_states,
                              attn_implementation="eager"))
    if isolate:
        # Free the model first; the child exports the saved model and takes the
        # exporters' caches (which pin every weight) with it when it exits.
        _release_weights(encoder)
        gc.collect()
        return export_saved_model(staging, jobs)[0]
    settings = run_export_jobs(encoder, jobs)[0]
    _release_weights(encoder)
    return settings


def _fast_variants(
    staging: Path,
    resolved: ResolvedConfig,
    references: list[Reference],
    text: tuple[dict, Any] | None,
    optimize: bool,
    quantize: str | None,
    atol: float,
    rtol: float,
    step: Step,
) -> list[Variant]:
    variants = []
    fusable = staging / FUSABLE_NAME
    if optimize:
        step("fusing attention, layer norms and GELU")
        fused = optimize_onnx(fusable, staging / OPTIMIZED_NAME, resolved.config)
        parity = compare_onnx(staging / OPTIMIZED_NAME, references, atol, rtol)
        variants.append(Variant("optimized", OPTIMIZED_NAME, fused=fused, parity=parity))
    if quantize:
        # The unfused graph, not the fused one: onnxruntime fuses it again at load, and
        # its int8 ran faster at batch 8 (bert-base 8x128: 148 ms against 176 ms).
        step("quantizing to int8 within the accuracy gate")
        inputs, expected = text
        quantized = quantize_within_gate(fusable, staging / INT8_NAME, inputs, expected)
        variants.append(Variant("int8", INT8_NAME, agreement=quantized.agreement,
                                kept_fp32=quantized.kept_fp32,
                                merged_projections=quantized.merged))
    for leftover in staging.glob(FUSABLE_NAME + "*"):
        leftover.unlink()
    return variants


def _text_reference(encoder: PreTrainedModel, staging: Path) -> tuple[dict, Any]:
    """Real sentences (the saved tokenizer's) and fp32 PyTorch's last_hidden_state on them."""
    inputs = text_inputs(staging, input_names_for(encoder))
    with torch.no_grad():
        out = encoder(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return inputs, out.last_hidden_state.numpy()


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
