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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from diagnostics import Report as FrozenCheck
from diagnostics import check, limits

from . import __version__
from .accuracy import Agreement, compare_embeddings, text_inputs
from .architecture import ResolvedConfig, resolve_config
from .checkpoint import Checkpoint, load_checkpoint, refuse_unusable, strip_prefix
from .config_sources import NO_TOKENIZER_CLASS, TOKENIZER_FILES, VOCABULARY_FILES, tokenizer_dir
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
from .runtimes import (
    RuntimeUnavailable,
    bf16_problem,
    calibration_samples,
    nncf_problem,
    onnxruntime_runner,
    openvino_problem,
    openvino_runner,
    quantize_openvino_int8,
    save_openvino_ir,
)

ONNX_NAME = "model.onnx"
OPENVINO_NAME = "openvino/model.xml"  # model.onnx as OpenVINO IR; run in f32, or bf16
OPENVINO_INT8_NAME = "openvino/model.int8.xml"  # static int8 by NNCF, calibrated on real text
FUSABLE_NAME = "fusable.onnx"  # TorchScript/eager graph that is fused and quantized; not kept
ISOLATE_EXPORT_BYTES = 256 << 20
HOW_TO_SUPPLY_TOKENIZER = "--tokenizer DIR (a folder with its tokenizer files) or --model DIR"
Step = Callable[[str], None]


@dataclass(frozen=True)
class TokenizerCopy:
    """The tokenizer written beside the model, or that none was: never a silent absence."""

    files: tuple[str, ...] = ()  # names copied into the output; empty when none was found
    directory: Path | None = None  # the folder they came from (absolute)
    given: bool = False  # passed as `tokenizer=` (--tokenizer DIR), not found by resolution

    @property
    def found(self) -> bool:
        return bool(self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "files": list(self.files),
            "from": str(self.directory) if self.directory else None,
            "given": self.given,
            "how_to_supply": None if self.found else HOW_TO_SUPPLY_TOKENIZER,
        }


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
    # With two int8 files: which ran faster here, with the timings ({"file", "ms", "why"}).
    int8_choice: dict[str, Any] | None = None
    # Where config.json's values and each copied tokenizer file came from (absolute paths).
    provenance: dict[str, Any] = field(default_factory=dict)
    tokenizer: TokenizerCopy = field(default_factory=TokenizerCopy)

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
            "int8_choice": self.int8_choice,
            "tokenizer": self.tokenizer.to_dict(),
            "provenance": self.provenance,
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
    tokenizer: str | Path | None = None,
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
    precision: str | None = None,
    runtime: str = "onnxruntime",
    keep_failed: bool = False,
    max_memory: int | str | None = None,
    step: Step | None = None,
) -> ExtractionReport:
    """Run the whole job and return its report; the output exists only if `report.ok`.

    Args:
        tokenizer: a local folder holding the tokenizer files to write beside the model
            (`--tokenizer DIR`), instead of the ones found with the config; never a Hub
            name. Without one found or given, the output has none, report.json says so,
            and `AutoTokenizer.from_pretrained(output)` raises rather than build an empty one.
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
            With OpenVINO and NNCF installed, also `openvino/model.int8.xml` (static
            int8 calibrated on real text, same gate); both are timed and the report
            records which is faster here (`int8_choice`).
        precision: "bf16": also write `openvino/model.xml`, the model as OpenVINO IR, run
            with bf16 arithmetic, gated on real text (token cosine >= 0.9995, sentence
            >= 0.9999). Needs OpenVINO and a CPU with bf16 instructions.
        runtime: "openvino": also write `openvino/model.xml`, checked in f32 (the exact
            tier: max abs <= 1e-4 on real text). Needs OpenVINO.
        keep_failed: when verification fails, keep the outputs in `<output>.failed`
            (with report.json) to inspect, instead of writing nothing.
        max_memory: the memory the run may take, in bytes or as text (`8G`); what a file
            declares beyond it (a config's layers and sizes, a zip's inflated members) is
            refused before it is built. Default: `limits.default_max_memory()`.
        step: called with a short label as each long step starts (for progress).

    Raises:
        ExtractorError: bad input; nothing has been written.
    """
    step = step or (lambda _label: None)
    timer = _Timer()
    path = Path(checkpoint)
    try:
        budget = limits.max_memory(max_memory)
    except ValueError as exc:
        raise ExtractorError(f"max_memory: {exc}") from None
    if budget < 1:
        raise ExtractorError(f"max_memory is {budget}, expected a positive number of bytes")
    given_tokenizer = _given_tokenizer(tokenizer)
    step("loading checkpoint")
    ckpt = load_checkpoint(path, trust=trust, max_memory=budget)
    chosen = choose_prefix(ckpt.state_dict, prefix)
    weights = strip_prefix(ckpt.state_dict, chosen)
    refuse_unusable(weights, chosen)
    out_dir = Path(output) if output is not None else default_output(path, chosen)
    inputs = ([path] + ([Path(config_file)] if config_file else [])
              + ([given_tokenizer] if given_tokenizer else []))
    check_output(out_dir, inputs, force)
    timer.lap("load")

    step("resolving architecture")
    resolved = resolve_config(weights, ckpt, config_file, model, overrides=overrides,
                              prefix=chosen, max_memory=budget)
    if given_tokenizer is not None:
        resolved = replace(resolved, tokenizer_dir=given_tokenizer)
    refuse_unexportable(resolved.config)
    if quantize is not None and quantize != "int8":
        raise ExtractorError(f"unknown quantization {quantize!r}; only 'int8' is supported")
    if precision not in (None, "bf16"):
        raise ExtractorError(f"unknown precision {precision!r}; only 'bf16' is supported")
    if precision and (problem := bf16_problem()):
        raise RuntimeUnavailable(f"--precision bf16: {problem}")
    if runtime not in ("onnxruntime", "openvino"):
        raise ExtractorError(f"unknown runtime {runtime!r}; 'onnxruntime' or 'openvino'")
    if runtime == "openvino" and (problem := openvino_problem()):
        raise RuntimeUnavailable(f"--runtime openvino: {problem}")
    openvino = runtime == "openvino" or precision == "bf16"
    if (quantize or openvino) and resolved.tokenizer_dir is None:
        flag = "--quantize" if quantize else "--precision" if precision else "--runtime"
        raise ExtractorError(f"{flag} needs the model's tokenizer for its accuracy gate on "
                             "real text; pass --tokenizer DIR or --model DIR (or --config in "
                             "a directory) that holds the tokenizer files")
    step("building the fresh model")
    encoder, keys = build_model(resolved.config, weights, pooler=pooler)
    source = _source(ckpt, chosen, weights)
    ckpt_dir = (ckpt.path if ckpt.path.is_dir() else ckpt.path.parent).resolve()
    del weights
    timer.lap("build")

    with staging_dir(out_dir) as staging:
        step("saving the Hugging Face model")
        if tokenizer_dir(resolved.tokenizer_dir) is None:  # nothing to copy
            encoder.config.tokenizer_class = NO_TOKENIZER_CLASS  # AutoTokenizer then raises
        encoder.save_pretrained(staging)
        copied = _copy_tokenizer(resolved, staging)
        timer.lap("save")

        step("running PyTorch at the parity shapes")
        # The attention every ONNX file is exported from: sdpa and eager agree on real
        # tokens but not always on padded ones (ModernBERT: 0.04 apart there).
        encoder.set_attn_implementation("eager")
        references = _references(encoder, hidden_states)
        text = _text_reference(encoder, staging) if quantize or openvino else None
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
        if openvino:
            step("converting to OpenVINO IR and checking it against fp32 on real text")
            variants.extend(_openvino_variants(staging, text, precision))
        int8_choice = None
        if quantize and nncf_problem() is None:
            step("static int8 in OpenVINO (NNCF, calibrated on real text)")
            static = _openvino_int8_variant(staging, text)
            if static.ok:
                variants.append(static)
                step("timing both int8 files")
                int8_choice = _choose_int8(staging, variants, text[0])
            else:  # an extra file that misses the gate is dropped, not a failed run
                folder = (staging / OPENVINO_INT8_NAME).parent
                for path in folder.glob("model.int8.*"):
                    path.unlink()
                if not any(folder.iterdir()):
                    folder.rmdir()
                int8_choice = {"file": INT8_NAME, "ms": {}, "rejected": static.to_dict(),
                               "why": f"{OPENVINO_INT8_NAME} missed the int8 gate on real text "
                               f"(tokens {static.agreement.token_cosine_mean:.4f}, sentences "
                               f"{static.agreement.sentence_cosine_mean:.4f}); not kept"}
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
            int8_choice=int8_choice,
            provenance=_provenance(resolved, copied, ckpt_dir),
            tokenizer=TokenizerCopy(tuple(copied), resolved.tokenizer_dir if copied else None,
                                    given_tokenizer is not None),
        )
        if report.ok or keep_failed:
            # A failed export goes beside the output, never in its place, for inspection.
            target = out_dir if report.ok else failed_output(out_dir)
            if not report.ok:
                check_output(target, inputs, force)  # the output itself was checked up front
            report.output = target
            report.files = sorted([str(p.relative_to(staging)) for p in staging.rglob("*")
                                   if p.is_file()] + [REPORT_NAME])
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
        "notes": list(ckpt.notes),
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
    runtime: str = "onnxruntime"
    precision: str = "fp32"  # what the runtime computes in: fp32, int8 or bf16

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
            "runtime": self.runtime,
            "precision": self.precision,
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
                                merged_projections=quantized.merged, precision="int8"))
    for leftover in staging.glob(FUSABLE_NAME + "*"):
        leftover.unlink()
    return variants


def _openvino_variants(staging: Path, text: tuple[dict, Any], precision: str | None
                       ) -> list[Variant]:
    """`openvino/model.xml` (model.onnx as IR) checked in f32, and in bf16 when asked."""
    inputs, expected = text
    ir = save_openvino_ir(staging / ONNX_NAME, staging / OPENVINO_NAME)
    variants = []
    for tier, hint in (("exact", "f32"), ("bf16", "bf16")):
        if tier == "bf16" and precision != "bf16":
            continue
        got = openvino_runner(ir, hint)(inputs)
        agreement = compare_embeddings(OPENVINO_NAME, got, expected, inputs["attention_mask"],
                                       tier)
        variants.append(Variant(f"openvino-{hint}", OPENVINO_NAME, agreement=agreement,
                                runtime="openvino", precision="fp32" if hint == "f32" else hint))
    return variants


def _openvino_int8_variant(staging: Path, text: tuple[dict, Any]) -> Variant:
    """`openvino/model.int8.xml`: NNCF's static int8 calibrated on the real sentences."""
    inputs, expected = text
    ir = quantize_openvino_int8(staging / ONNX_NAME, staging / OPENVINO_INT8_NAME,
                                calibration_samples(inputs))
    got = openvino_runner(ir, "f32")(inputs)
    agreement = compare_embeddings(OPENVINO_INT8_NAME, got, expected, inputs["attention_mask"],
                                   "int8")
    return Variant("openvino-int8", OPENVINO_INT8_NAME, agreement=agreement,
                   runtime="openvino", precision="int8")


def _choose_int8(staging: Path, variants: list[Variant], inputs: dict[str, Any]
                 ) -> dict[str, Any]:
    """Time both int8 files on the real-text batch here; the faster one that passes wins."""
    from .speed import interleaved_medians

    passing = {v.file: v for v in variants if v.precision == "int8" and v.ok}
    runners = {}
    for file in passing:
        run = (openvino_runner(staging / file, "f32") if file.endswith(".xml")
               else onnxruntime_runner(staging / file))
        runners[file] = lambda run=run: run(inputs)
    if not runners:
        return {"file": None, "ms": {}, "why": "no int8 file passed the gate"}
    medians = interleaved_medians(runners, 10)
    best = min(medians, key=medians.get)
    shape = "x".join(map(str, inputs["input_ids"].shape))
    others = ", ".join(f"{f} {ms:.1f} ms" for f, ms in medians.items() if f != best)
    why = f"fastest on this machine at {shape} (real text): {medians[best]:.1f} ms" + (
        f" against {others}" if others else "")
    return {"file": best, "ms": medians, "why": why}


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


def _given_tokenizer(tokenizer: str | Path | None) -> Path | None:
    """The `tokenizer=` folder, checked before any work: local only (nothing is looked up
    on the Hub) and holding a vocabulary, else one line saying what it is instead."""
    if tokenizer is None:
        return None
    if not str(tokenizer):
        raise ExtractorError("--tokenizer is empty; give the folder that holds the tokenizer "
                             "files")
    path = Path(tokenizer)
    if not path.exists():
        raise ExtractorError(f"--tokenizer {path} does not exist (a local folder with the "
                             "tokenizer files is expected; nothing is downloaded)")
    if not path.is_dir():
        raise ExtractorError(f"--tokenizer {path} is not a folder; give the folder that holds "
                             "the tokenizer files")
    if tokenizer_dir(path) is None:
        raise ExtractorError(f"--tokenizer {path} holds no tokenizer vocabulary (none of "
                             f"{', '.join(VOCABULARY_FILES)})")
    return path.resolve()


def _copy_tokenizer(resolved: ResolvedConfig, staging: Path) -> dict[str, str]:
    """Copy the tokenizer files; returns each name with the absolute path it came from."""
    copied: dict[str, str] = {}
    if resolved.tokenizer_dir is None:
        return copied
    for name in TOKENIZER_FILES:
        source = resolved.tokenizer_dir / name
        if source.is_file():
            shutil.copyfile(source, staging / name)
            copied[name] = str(source.resolve())
    return copied


def _provenance(resolved: ResolvedConfig, copied: dict[str, str], checkpoint_dir: Path
                ) -> dict[str, Any]:
    """Where the output's config and tokenizer came from, with absolute paths: a name in a
    checkpoint's config may point anywhere (`../..`, `/elsewhere`), and what was copied
    from outside the checkpoint's folder is said, never silent."""
    outside = sorted(name for name, source in copied.items()
                     if not Path(source).is_relative_to(checkpoint_dir))
    config_file = resolved.config_file
    return {
        "config": {"source": resolved.source,
                   "file": str(config_file) if config_file else None,
                   "outside_checkpoint_folder": bool(
                       config_file and not config_file.is_relative_to(checkpoint_dir))},
        "copied_from": copied,
        "outside_checkpoint_folder": outside,
        "checkpoint_folder": str(checkpoint_dir),
    }


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now
