"""What one extraction is asked to do, checked in one place before any work.

`ExtractOptions` holds every choice of `extract` (and of `python -m extractor
extract`); making one checks them all: an unknown quantization, precision or
runtime, a runtime this machine lacks, a memory budget that is no size, a
`--tokenizer` folder that holds no tokenizer. A run with a bad option stops
before its checkpoint is read. What needs the checkpoint too (a tokenizer for
the real-text gates) is checked once the config is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from diagnostics import limits

from .errors import ExtractorError
from .parity import DEFAULT_ATOL, DEFAULT_RTOL
from .resolve.config_sources import VOCABULARY_FILES, tokenizer_dir
from .tiers.runtimes import RuntimeUnavailable, bf16_problem, openvino_problem

QUANTIZATIONS = ("int8",)
PRECISIONS = ("bf16",)
RUNTIMES = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class ExtractOptions:
    """Every choice of one extraction; made only valid (else `ExtractorError`).

    Attributes:
        prefix: the encoder's key prefix (default: the single encoder found).
        output: the output folder (default: `<checkpoint dir>/<stem>-<prefix>-onnx`).
        config_file, model: the config to use (`--config FILE`, `--model DIR`).
        tokenizer: a local folder holding the tokenizer files to write beside the model
            (`--tokenizer DIR`), instead of the ones found with the config; never a Hub
            name. Without one found or given, the output has none, report.json says so,
            and `AutoTokenizer.from_pretrained(output)` raises rather than build an empty one.
        overrides: config values to set (`--set NAME=VALUE`); with no config in the
            checkpoint's files, the values shapes cannot tell must be among them.
        trust: unpickle with arbitrary code (only for trusted files).
        exporter, opset: the torch.onnx exporter and ONNX opset (None: the exporter's).
        hidden_states: also export every layer's hidden states.
        pooler: False leaves the checkpoint's pooler out: only `last_hidden_state` (and
            hidden states) are exported.
        atol, rtol: the parity tolerances.
        force: replace an output folder not written by this tool.
        isolate_export: export in a fresh process from the saved model (default: when
            the weights exceed 256 MiB), so the exporter's caches cannot pin the weights.
        optimize: also write `model.optimized.onnx` with onnxruntime's transformer
            fusions (exported for fusion: TorchScript, eager attention), parity-checked.
        quantize: "int8": also write `model.int8.onnx` (dynamic int8 of the graph exported
            for fusion), gated on cosine similarity on real text (selected on one part
            of the shipped corpus, judged on another), and `model.int8.static.onnx`
            (onnxruntime's static QDQ int8, same gate; dropped if it misses it).
            With OpenVINO and NNCF installed, also `openvino/model.int8.xml` (static
            int8 calibrated on real text, same gate); the passing files are timed and
            the report records the fastest here (`int8_choice`).
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
        budget: `max_memory` in bytes (set from it).
        given_tokenizer: `tokenizer` as an absolute folder, checked (set from it).

    Raises:
        ExtractorError: an option no run can take, naming it.
        RuntimeUnavailable: a precision or runtime this machine cannot run.
    """

    prefix: str | None = None
    output: str | Path | None = None
    config_file: str | Path | None = None
    model: str | Path | None = None
    tokenizer: str | Path | None = None
    overrides: Mapping[str, Any] | None = field(default=None, hash=False)  # read-only once made
    trust: bool = False
    exporter: str = "dynamo"
    opset: int | None = None
    hidden_states: bool = False
    pooler: bool = True
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    force: bool = False
    isolate_export: bool | None = None
    optimize: bool = False
    quantize: str | None = None
    precision: str | None = None
    runtime: str = "onnxruntime"
    keep_failed: bool = False
    max_memory: int | str | None = None
    budget: int = field(init=False, repr=False, compare=False)
    given_tokenizer: Path | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.overrides is not None:  # a copy no caller can change after the checks
            object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        object.__setattr__(self, "budget", _budget(self.max_memory))
        object.__setattr__(self, "given_tokenizer", _given_tokenizer(self.tokenizer))
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise ExtractorError(f"unknown quantization {self.quantize!r}; only 'int8' is "
                                 "supported")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ExtractorError(f"unknown precision {self.precision!r}; only 'bf16' is "
                                 "supported")
        if self.precision and (problem := bf16_problem()):
            raise RuntimeUnavailable(f"--precision bf16: {problem}")
        if self.runtime not in RUNTIMES:
            raise ExtractorError(f"unknown runtime {self.runtime!r}; 'onnxruntime' or "
                                 "'openvino'")
        if self.runtime == "openvino" and (problem := openvino_problem()):
            raise RuntimeUnavailable(f"--runtime openvino: {problem}")

    @property
    def openvino(self) -> bool:
        """Whether OpenVINO IR is written (and checked on real text)."""
        return self.runtime == "openvino" or self.precision == "bf16"

    @property
    def real_text(self) -> bool:
        """Whether a gate compares outputs on real text (it needs the tokenizer)."""
        return bool(self.quantize) or self.openvino

    @property
    def fusable(self) -> bool:
        """Whether the graph for fusion and quantization (TorchScript) is exported too."""
        return self.optimize or bool(self.quantize)

    def real_text_flag(self) -> str:
        """The flag that asked for a real-text gate, for the message refusing it."""
        return "--quantize" if self.quantize else "--precision" if self.precision else "--runtime"


def _budget(max_memory: int | str | None) -> int:
    try:
        budget = limits.max_memory(max_memory)
    except ValueError as exc:
        raise ExtractorError(f"max_memory: {exc}") from None
    if budget < 1:
        raise ExtractorError(f"max_memory is {budget}, expected a positive number of bytes")
    return budget


def _given_tokenizer(tokenizer: str | Path | None) -> Path | None:
    """The `tokenizer=` folder: local only (nothing is looked up on the Hub) and holding a
    vocabulary, else one line saying what it is instead."""
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
