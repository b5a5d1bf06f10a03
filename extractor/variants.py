"""The faster and smaller files beside `model.onnx`, each behind its own check.

`--optimize` (onnxruntime's fusions, parity-checked), `--quantize int8` (dynamic
int8 within the accuracy gate on real text; beside it static int8 in onnxruntime,
and NNCF's static int8 where OpenVINO is installed, the fastest passing one
recorded), `--runtime openvino` and `--precision bf16` (OpenVINO IR, gated on real
text). Every int8 file is selected on the corpus's selection part and judged on its
judging part (`tiers.corpus`); the OpenVINO f32 and bf16 files are judged there
too. A variant that misses its check fails the run; a static int8 file missing its
gate is dropped instead.
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
from .tiers.corpus import Judgement, RealText, judge
from .tiers.optimize import OPTIMIZED_NAME, OptimizeResult, optimize_onnx
from .tiers.quantize import (
    INT8_MARGIN,
    INT8_NAME,
    QuantizeResult,
    quantize_each_within_gate,
    quantize_int8,
)
from .tiers.runtimes import (
    nncf_problem,
    onnxruntime_runner,
    openvino_runner,
    quantize_openvino_int8,
    save_openvino_ir,
)
from .tiers.static_int8 import STATIC_INT8_NAME, static_quantizer

ONNX_NAME = "model.onnx"
# Static int8 that needs more than half its MatMuls kept in fp32 is not worth the rest
# of its search (each step requantizes and reruns the gate; MiniLM needs 8 of 24).
STATIC_MAX_KEPT_SHARE = 0.5
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
    agreement: Agreement | None = None  # gated tiers: on the selection part, the search's text
    judged: Judgement | None = None  # gated tiers: on the judging part, never seen by a search
    # int8 with a search: how far above the gate the selection part had to be.
    selection_margin: tuple[float, float] | None = None
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
            and (self.judged is None or self.judged.ok)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "ok": self.ok,
            "fused": self.fused.fused if self.fused else None,
            "parity": self.parity.to_dict() if self.parity else None,
            "accuracy": self.agreement.to_dict() if self.agreement else None,
            "judged": self.judged.to_dict() if self.judged else None,
            "selection_margin": list(self.selection_margin) if self.selection_margin else None,
            "kept_fp32": self.kept_fp32,
            "merged_projections": self.merged_projections,
            "runtime": self.runtime,
            "precision": self.precision,
        }


def build_variants(staging: Path, resolved: ResolvedConfig, references: list[Reference],
              text: RealText | None, options: ExtractOptions, step: Step
              ) -> tuple[list[Variant], dict[str, Any] | None]:
    """The faster and smaller files asked for, each checked, and which int8 file won."""
    statics: list[Variant] = []
    try:
        variants = _optimized_variants(staging, resolved, references, options, step)
        if options.quantize:
            # The unfused graph, not the fused one: onnxruntime fuses it again at load, and
            # its int8 ran faster at batch 8 (bert-base 8x128: 148 ms against 176 ms).
            step("quantizing to int8 (dynamic, and static QDQ) within the accuracy gate")
            dynamic, static = _onnxruntime_int8(staging, text)
            variants.append(dynamic)
            statics.append(static)
    finally:
        for leftover in staging.glob(FUSABLE_NAME + "*"):
            leftover.unlink()
    if options.openvino:
        step("converting to OpenVINO IR and checking it against fp32 on real text")
        variants.extend(_openvino_variants(staging, text, options.precision))
    if not options.quantize:
        return variants, None
    if nncf_problem() is None:
        step("static int8 in OpenVINO (NNCF, calibrated on real text)")
        statics.append(_openvino_int8_variant(staging, text))
    rejected = [_drop(staging, v) for v in statics if not v.ok]
    variants.extend(v for v in statics if v.ok)
    passing = [v.file for v in variants if v.precision == "int8" and v.ok]
    if len(passing) > 1:
        step("timing the int8 files")
        # A batch users run (8 sentences, short and long), not the 48-sentence selection.
        choice = _choose_int8(staging, variants, text.judging["padded"][0].inputs)
    elif passing:
        choice = {"file": passing[0], "ms": {}, "why": "the only int8 file that passed"}
    else:
        choice = {"file": None, "ms": {}, "why": "no int8 file passed the gate"}
    return variants, {**choice, "rejected": rejected} if rejected else choice


def _drop(staging: Path, static: Variant) -> dict[str, Any]:
    """Remove a static int8 file that missed its gate; what it measured, for report.json."""
    for path in (staging / static.file).parent.glob(Path(static.file).stem + ".*"):
        path.unlink()
    folder = (staging / static.file).parent
    if folder != staging and not any(folder.iterdir()):
        folder.rmdir()
    judged = static.judged.compositions if static.judged else {}
    part, missed = next((part, a) for part, a in [("selection", static.agreement),
                                                  *judged.items()] if not a.ok)
    return {**static.to_dict(), "why": f"{static.file} missed the int8 gate on real text "
            f"({part}: tokens {missed.token_cosine_mean:.4f}, sentences "
            f"{missed.sentence_cosine_mean:.4f}); not kept"}


def _onnxruntime_int8(staging: Path, text: RealText) -> tuple[Variant, Variant]:
    """`model.int8.onnx` (dynamic) and `model.int8.static.onnx` (QDQ, ranges calibrated
    on the selection part), each searched and judged on the same merged, ranked graph."""
    dynamic, static = staging / INT8_NAME, staging / STATIC_INT8_NAME
    results = quantize_each_within_gate(
        staging / FUSABLE_NAME,
        {dynamic: quantize_int8, static: static_quantizer(text.calibration_samples())}, text,
        max_kept_share={static: STATIC_MAX_KEPT_SHARE})
    return (_int8_variant("int8", INT8_NAME, results[dynamic]),
            _int8_variant("int8-static", STATIC_INT8_NAME, results[static]))


def _int8_variant(name: str, file: str, result: QuantizeResult) -> Variant:
    return Variant(name, file, agreement=result.agreement, judged=result.judged,
                   kept_fp32=result.kept_fp32, merged_projections=result.merged,
                   precision="int8", selection_margin=INT8_MARGIN)


def _optimized_variants(
    staging: Path,
    resolved: ResolvedConfig,
    references: list[Reference],
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
    return variants


def _openvino_variants(staging: Path, text: RealText, precision: str | None
                       ) -> list[Variant]:
    """`openvino/model.xml` (model.onnx as IR) checked in f32, and in bf16 when asked, on
    the selection batch and judged on the judging part like the int8 files."""
    inputs, expected = text.inputs, text.expected
    ir = save_openvino_ir(staging / ONNX_NAME, staging / OPENVINO_NAME)
    variants = []
    for tier, hint in (("exact", "f32"), ("bf16", "bf16")):
        if tier == "bf16" and precision != "bf16":
            continue
        run = openvino_runner(ir, hint)
        agreement = compare_embeddings(OPENVINO_NAME, run(inputs), expected,
                                       inputs["attention_mask"], tier)
        variants.append(Variant(f"openvino-{hint}", OPENVINO_NAME, agreement=agreement,
                                judged=judge(OPENVINO_NAME, run, text, tier),
                                runtime="openvino", precision="fp32" if hint == "f32" else hint))
    return variants


def _openvino_int8_variant(staging: Path, text: RealText) -> Variant:
    """`openvino/model.int8.xml`: NNCF's static int8 calibrated on the selection part."""
    inputs, expected = text.inputs, text.expected
    ir = quantize_openvino_int8(staging / ONNX_NAME, staging / OPENVINO_INT8_NAME,
                                text.calibration_samples())
    run = openvino_runner(ir, "f32")
    agreement = compare_embeddings(OPENVINO_INT8_NAME, run(inputs), expected,
                                   inputs["attention_mask"], "int8")
    return Variant("openvino-int8", OPENVINO_INT8_NAME, agreement=agreement,
                   judged=judge(OPENVINO_INT8_NAME, run, text),
                   runtime="openvino", precision="int8")


def _choose_int8(staging: Path, variants: list[Variant], inputs: dict[str, Any]
                 ) -> dict[str, Any]:
    """Time the int8 files on the real-text batch here; the fastest one that passes wins."""
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
