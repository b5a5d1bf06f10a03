"""When parity fails, say where: the first module whose ONNX output diverges.

`diagnostics.compare` runs the staged `model.onnx` and the encoder module by module at
the first failing case's shape and names the first divergent module, its ONNX nodes
and a cause. The encoder's weights were emptied after export (to free memory before
onnxruntime loads), so the module is the staged Hugging Face model, loaded once more
and passed in memory. The comparison explains a failure and never replaces it: if it
cannot run, that is one line beside the original failure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .parity import ParityReport

COMPARE_NAME = "compare.json"


@dataclass(frozen=True)
class FailureComparison:
    """What the module-by-module comparison found for a failed export."""

    first_divergence: dict[str, Any] | None  # `Divergence` as a dict; None: none found
    error: str | None = None  # one line when the comparison itself could not run
    report: dict[str, Any] | None = None  # the whole comparison (`compare.json`)

    def to_dict(self) -> dict[str, Any]:
        return {"first_divergence": self.first_divergence, "error": self.error}


def compare_failure(onnx_path: Path, model_dir: Path, parity: ParityReport, atol: float,
                    rtol: float) -> FailureComparison:
    """Compare `onnx_path` with the model saved in `model_dir` at the shape of the first
    failing parity case; every failure of the comparison becomes `error`."""
    failed = parity.failures
    if not failed:
        return FailureComparison(None)
    shape = (failed[0].batch, failed[0].sequence)
    try:
        from diagnostics.compare.judge import compare

        module = _load_module(model_dir)
        report = compare(onnx_path, module, shapes=[shape], atol=atol, rtol=rtol)
    except Exception as exc:  # an explanation must never turn the failure into a crash
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return FailureComparison(None, f"{type(exc).__name__}: {first}".rstrip(": "))
    divergence = asdict(report.first_divergence) if report.first_divergence else None
    return FailureComparison(divergence, None, report.to_dict())


def _load_module(model_dir: Path):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    if bar:  # its weight-loading bar would land on the user's stderr
        hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.set_attn_implementation("eager")  # the attention every ONNX file is exported from
    return model.eval()
