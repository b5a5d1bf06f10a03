"""The whole job: checkpoint -> stripped weights -> fresh model -> verified dynamic ONNX.

Each step is a plain function in its own module; this one chains them as named
stages, writes every output in a temporary directory first, and moves it into
place only when the export passed its parity check. What is asked is an
`ExtractOptions` (`options`), checked as it is made, before any work.
"""

from __future__ import annotations

import gc
import itertools
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from diagnostics import Report as FrozenCheck
from diagnostics import check

from . import __version__
from .divergence import COMPARE_NAME, FailureComparison, compare_failure
from .errors import ExtractorError
from .export import ExportSettings, refuse_unexportable
from .export_child import ExportJob, export_saved_model, run_export_jobs
from .export_inputs import EncoderWrapper, choose_dummy_sizes, input_names_for, output_names_for
from .options import ExtractOptions
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
    ParityReport,
    Reference,
    compare_onnx,
    parity_cases,
    reference_outputs,
)
from .resolve.architecture import ResolvedConfig, resolve_config
from .resolve.checkpoint import Checkpoint
from .resolve.config_sources import (
    NO_TOKENIZER_CLASS,
    TOKENIZER_FILES,
    oversized_tokenizer_file,
    tokenizer_dir,
    tokenizer_problem,
)
from .resolve.model import KeyReport, build_model
from .resolve.opening import open_checkpoint
from .resolve.prefixes import choose_prefix, encoder_match
from .resolve.state_dicts import StateDict, refuse_unusable, strip_prefix
from .tiers.corpus import RealText, real_text
from .variants import FUSABLE_NAME, ONNX_NAME, Step, Variant, build_variants

ISOLATE_EXPORT_BYTES = 256 << 20
HOW_TO_SUPPLY_TOKENIZER = "--tokenizer DIR (a folder with its tokenizer files) or --model DIR"


@dataclass(frozen=True)
class TokenizerCopy:
    """The tokenizer written beside the model, or that none was: never a silent absence."""

    files: tuple[str, ...] = ()  # names copied into the output; empty when none was found
    directory: Path | None = None  # the folder they came from (absolute)
    given: bool = False  # passed as `tokenizer=` (--tokenizer DIR), not found by resolution
    problem: str | None = None  # why AutoTokenizer cannot load the files copied, if it cannot

    @property
    def found(self) -> bool:
        return bool(self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "files": list(self.files),
            "from": str(self.directory) if self.directory else None,
            "given": self.given,
            "loads": self.found and self.problem is None,
            "problem": self.problem,
            "how_to_supply": None if self.found and not self.problem else HOW_TO_SUPPLY_TOKENIZER,
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
    # When parity failed: the first divergent module, or why the comparison could not run.
    comparison: FailureComparison | None = None

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
            "first_divergence": self.comparison.first_divergence if self.comparison else None,
            "first_divergence_error": self.comparison.error if self.comparison else None,
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
    options: ExtractOptions | None = None,
    step: Step | None = None,
    **keywords: Any,
) -> ExtractionReport:
    """Run the whole job and return its report; the output exists only if `report.ok`.

    Args:
        prefix, output, keywords: the fields of `ExtractOptions` (`extract(path, "bert.",
            out, quantize="int8")`); or all of them as `options`, not both.
        step: called with a short label as each long step starts (for progress).

    Raises:
        ExtractorError: bad input; nothing has been written.
    """
    options = _options(prefix, output, options, keywords)
    step = step or _silent
    timer = _Timer()
    path = Path(checkpoint)

    step("loading checkpoint")
    ckpt = open_checkpoint(path, trust=options.trust, max_memory=options.budget)
    chosen, weights = _encoder_weights(ckpt, options.prefix)
    destination = _destination(path, chosen, options)
    timer.lap("load")

    step("resolving architecture")
    resolved = _resolve(weights, ckpt, chosen, options)
    step("building the fresh model")
    encoder, keys = build_model(resolved.config, weights, pooler=options.pooler)
    source = _source(ckpt, chosen, weights)
    ckpt_dir = _checkpoint_folder(ckpt)
    del weights
    timer.lap("build")

    with staging_dir(destination.directory) as staging:
        step("saving the Hugging Face model")
        copied = _save_model(encoder, resolved, staging)
        timer.lap("save")

        step("running PyTorch at the parity shapes")
        references, text = _pytorch_outputs(encoder, staging, options, resolved.tokenizer_dir)
        step("exporting to ONNX")
        del ckpt  # its tensors share the encoder's memory map; only the encoder is needed now
        settings = _export(encoder, staging, options)
        del encoder
        gc.collect()
        timer.lap("export")

        parity, frozen = _verify(staging, references, options, step)
        timer.lap("verify")
        comparison = None
        if not parity.ok:
            step("comparing module by module")
            comparison = compare_failure(staging / ONNX_NAME, staging, parity, options.atol,
                                         options.rtol)
            timer.lap("compare")
        variants, int8_choice = build_variants(staging, resolved, references, text, options, step)
        if variants:
            timer.lap("optimize")

        report = ExtractionReport(
            source, chosen, resolved, keys, settings, parity, frozen, variants,
            seconds=timer.seconds, int8_choice=int8_choice,
            provenance=_provenance(resolved, copied, ckpt_dir),
            tokenizer=TokenizerCopy(tuple(copied), resolved.tokenizer_dir if copied else None,
                                    options.given_tokenizer is not None,
                                    tokenizer_problem(staging) if copied else None),
            comparison=comparison,
        )
        _publish(report, staging, destination, options)
    return report


@dataclass(frozen=True)
class Destination:
    """Where the outputs go, and the inputs they must not overwrite."""

    directory: Path
    inputs: tuple[Path, ...]


def _options(prefix: str | None, output: str | Path | None, options: ExtractOptions | None,
             keywords: dict[str, Any]) -> ExtractOptions:
    """`options`, or the one the arguments make (checked as it is made)."""
    if options is None:
        return ExtractOptions(prefix=prefix, output=output, **keywords)
    if prefix is not None or output is not None or keywords:
        raise TypeError("extract() takes options= or the options' fields, not both")
    return options


def _silent(_label: str) -> None:
    pass


def _encoder_weights(ckpt: Checkpoint, prefix: str | None) -> tuple[str, StateDict]:
    """The encoder's prefix and its weights with the prefix stripped, each usable."""
    chosen = choose_prefix(ckpt.state_dict, prefix)
    weights = strip_prefix(ckpt.state_dict, chosen)
    refuse_unusable(weights, chosen)
    return chosen, weights


def _destination(path: Path, prefix: str, options: ExtractOptions) -> Destination:
    """The output folder, checked against the inputs before anything is built."""
    directory = (Path(options.output) if options.output is not None
                 else default_output(path, prefix))
    inputs = ([path] + ([Path(options.config_file)] if options.config_file else [])
              + ([options.given_tokenizer] if options.given_tokenizer else []))
    check_output(directory, inputs, options.force)
    return Destination(directory, tuple(inputs))


def _resolve(weights: StateDict, ckpt: Checkpoint, prefix: str, options: ExtractOptions
             ) -> ResolvedConfig:
    """The config the weights fit, with the given tokenizer, refused when it cannot be
    exported or a real-text gate has no tokenizer."""
    resolved = resolve_config(weights, ckpt, options.config_file, options.model,
                              overrides=options.overrides, prefix=prefix,
                              max_memory=options.budget)
    if options.given_tokenizer is not None:
        resolved = replace(resolved, tokenizer_dir=options.given_tokenizer)
    refuse_unexportable(resolved.config)
    if options.real_text and resolved.tokenizer_dir is None:
        raise ExtractorError(f"{options.real_text_flag()} needs the model's tokenizer for its "
                             "accuracy gate on real text; pass --tokenizer DIR or --model DIR "
                             "(or --config in a directory) that holds the tokenizer files")
    return resolved


def _save_model(encoder: PreTrainedModel, resolved: ResolvedConfig, staging: Path
                ) -> dict[str, str]:
    """The Hugging Face model and its tokenizer files; returns what `_copy_tokenizer` did."""
    if tokenizer_dir(resolved.tokenizer_dir) is None:  # nothing to copy
        encoder.config.tokenizer_class = NO_TOKENIZER_CLASS  # AutoTokenizer then raises
    encoder.save_pretrained(staging)
    return _copy_tokenizer(resolved, staging)


def _pytorch_outputs(encoder: PreTrainedModel, staging: Path, options: ExtractOptions,
                     tokenizer_source: Path | None) -> tuple[list[Reference], RealText | None]:
    """PyTorch's outputs at the parity shapes, and on real text where a gate needs them."""
    # The attention every ONNX file is exported from: sdpa and eager agree on real
    # tokens but not always on padded ones (ModernBERT: 0.04 apart there).
    encoder.set_attn_implementation("eager")
    references = _references(encoder, options.hidden_states)
    text = _text_reference(encoder, staging, tokenizer_source) if options.real_text else None
    return references, text


def _verify(staging: Path, references: list[Reference], options: ExtractOptions, step: Step
            ) -> tuple[ParityReport, FrozenCheck]:
    step("verifying PyTorch against onnxruntime")
    parity = compare_onnx(staging / ONNX_NAME, references, options.atol, options.rtol)
    step("checking the graph for frozen shapes")
    return parity, check(staging / ONNX_NAME)


def _publish(report: ExtractionReport, staging: Path, destination: Destination,
             options: ExtractOptions) -> None:
    """Move the staged outputs with report.json into place when they passed (or into
    `<output>.failed` with `keep_failed`); otherwise nothing is written."""
    if not (report.ok or options.keep_failed):
        return
    # A failed export goes beside the output, never in its place, for inspection.
    target = destination.directory if report.ok else failed_output(destination.directory)
    if not report.ok:
        check_output(target, list(destination.inputs), options.force)  # output: checked up front
    report.output = target
    if report.comparison and report.comparison.report:  # kept beside the failed export
        write_json(staging / COMPARE_NAME, report.comparison.report)
    report.files = sorted([str(p.relative_to(staging)) for p in staging.rglob("*")
                           if p.is_file()] + [REPORT_NAME])
    write_json(staging / REPORT_NAME, report.to_dict())
    commit(staging, target)


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


def _checkpoint_folder(ckpt: Checkpoint) -> Path:
    return (ckpt.path if ckpt.path.is_dir() else ckpt.path.parent).resolve()


def _references(encoder: PreTrainedModel, hidden_states: bool) -> list[Reference]:
    """PyTorch outputs at the parity shapes, for the names and dummy the export will use."""
    input_names = input_names_for(encoder)
    wrapper = EncoderWrapper(encoder, input_names, hidden_states).eval()
    cases = parity_cases(encoder.config, *choose_dummy_sizes(encoder.config))
    return reference_outputs(
        wrapper, encoder.config, input_names, output_names_for(encoder, hidden_states), cases
    )


def _export(encoder: PreTrainedModel, staging: Path, options: ExtractOptions) -> ExportSettings:
    """`model.onnx`, plus the graph the optimizer can fuse; the weights are freed after.

    Both are exported from eager attention: PyTorch's sdpa path exports with a Where and
    an IsNaN guard around every softmax (bert-base in onnxruntime: 5-7% slower).
    """
    exporter, opset, hidden_states = options.exporter, options.opset, options.hidden_states
    jobs = [ExportJob(str(staging / ONNX_NAME), exporter, opset, hidden_states,
                      attn_implementation="eager")]
    if options.fusable:
        jobs.append(ExportJob(str(staging / FUSABLE_NAME), "torchscript", opset, hidden_states,
                              attn_implementation="eager"))
    isolate = options.isolate_export
    if isolate is None:
        isolate = _weight_bytes(encoder) > ISOLATE_EXPORT_BYTES
    if isolate:
        # Free the model first; the child exports the saved model and takes the
        # exporters' caches (which pin every weight) with it when it exits.
        _release_weights(encoder)
        gc.collect()
        return export_saved_model(staging, jobs)[0]
    settings = run_export_jobs(encoder, jobs)[0]
    _release_weights(encoder)
    return settings


def _text_reference(encoder: PreTrainedModel, staging: Path, source: Path | None
                    ) -> RealText:
    """The real-text corpus (the saved tokenizer's) and fp32 PyTorch's last_hidden_state
    on each of its batches: selection and judging parts."""
    def forward(inputs: dict[str, Any]) -> Any:
        with torch.no_grad():
            out = encoder(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        return out.last_hidden_state.numpy()
    return real_text(staging, input_names_for(encoder), forward, source)


def _weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.parameters())


def _release_weights(model: torch.nn.Module) -> None:
    """Empty every tensor so its memory goes even where a cache still holds the module."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        tensor.data = torch.empty(0, dtype=tensor.dtype)


def _copy_tokenizer(resolved: ResolvedConfig, staging: Path) -> dict[str, str]:
    """Copy the tokenizer files; returns each name with the absolute path it came from."""
    copied: dict[str, str] = {}
    if resolved.tokenizer_dir is None:
        return copied
    if problem := oversized_tokenizer_file(resolved.tokenizer_dir):
        raise ExtractorError(f"{resolved.tokenizer_dir}: {problem}; pass --tokenizer DIR with "
                             "the model's own tokenizer files")
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
