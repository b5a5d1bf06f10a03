"""The faster and smaller files beside `model.onnx`, each behind its own check.

`--optimize` (onnxruntime's fusions, parity-checked), `--quantize int8` (dynamic
int8 within the accuracy gate on real text, and NNCF's static int8 where OpenVINO
is installed, the faster of the two recorded), `--runtime openvino` and
`--precision bf16` (OpenVINO IR, gated on real text). A variant that misses its
check fails the run; NNCF's static int8 missing its gate is dropped instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .options import ExtractOptions
from .parity import ParityReport, Reference, compare_onnx
from .resolve.architecture import ResolvedConfig
from .tiers.accuracy import Agreement, compare_embeddings
from .tiers.optimize import OPTIMIZED_NAME, OptimizeResult, optimize_onnx
from .tiers.quantize import INT8_NAME, quantize_within_gate
from .tiers.runtimes import (
    calibration_samples,
    nncf_problem,
    onnxruntime_runner,
    openvino_runner,
    quantize_openvino_int8,
    save_openvino_ir,
)

ONNX_NAME = "model.onnx"
OPENVINO_NAME = "openvino/model.xml"  # model.onnx as OpenVINO IR; run in f32, or bf16
OPENVINO_INT8_NAME = "openvino/model.int8.xml"  # static int8 by NNCF, calibrated on real text
FUSABLE_NAME = "fusable.onnx"  # TorchScript/eager graph that is fused and quantized; not kept
Step = Callable[[str], None]


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


def build_variants(staging: Path, resolved: ResolvedConfig, references: list[Reference],
              text: tuple[dict, Any] | None, options: ExtractOptions, step: Step
              ) -> tuple[list[Variant], dict[str, Any] | None]:
    """The faster and smaller files asked for, each checked, and which int8 file won."""
    variants = _fast_variants(staging, resolved, references, text, options, step)
    if options.openvino:
        step("converting to OpenVINO IR and checking it against fp32 on real text")
        variants.extend(_openvino_variants(staging, text, options.precision))
    int8_choice = None
    if options.quantize and nncf_problem() is None:
        step("static int8 in OpenVINO (NNCF, calibrated on real text)")
        int8_choice = _static_int8(staging, text, variants, step)
    return variants, int8_choice


def _static_int8(staging: Path, text: tuple[dict, Any], variants: list[Variant], step: Step
                 ) -> dict[str, Any]:
    """Add NNCF's int8 file when it passes its gate and time it against the dynamic one;
    one that misses the gate is dropped, not a failed run."""
    static = _openvino_int8_variant(staging, text)
    if static.ok:
        variants.append(static)
        step("timing both int8 files")
        return _choose_int8(staging, variants, text[0])
    folder = (staging / OPENVINO_INT8_NAME).parent
    for path in folder.glob("model.int8.*"):
        path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
    return {"file": INT8_NAME, "ms": {}, "rejected": static.to_dict(),
            "why": f"{OPENVINO_INT8_NAME} missed the int8 gate on real text "
            f"(tokens {static.agreement.token_cosine_mean:.4f}, sentences "
            f"{static.agreement.sentence_cosine_mean:.4f}); not kept"}


def _fast_variants(
    staging: Path,
    resolved: ResolvedConfig,
    references: list[Reference],
    text: tuple[dict, Any] | None,
    options: ExtractOptions,
    step: Step,
) -> list[Variant]:
    variants = []
    fusable = staging / FUSABLE_NAME
    if options.optimize:
        step("fusing attention, layer norms and GELU")
        fused = optimize_onnx(fusable, staging / OPTIMIZED_NAME, resolved.config)
        parity = compare_onnx(staging / OPTIMIZED_NAME, references, options.atol, options.rtol)
        variants.append(Variant("optimized", OPTIMIZED_NAME, fused=fused, parity=parity))
    if options.quantize:
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
    from .bench.speed import interleaved_medians

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
