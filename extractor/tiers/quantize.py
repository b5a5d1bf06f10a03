"""Dynamic int8 quantization that stays within the accuracy gate on real text.

Everything quantizable (Attention, MatMul with constant weights) is quantized
first; while the gate fails, the node whose input activation loses most to
per-tensor uint8 quantization (GELU outputs, with their outliers, usually) is
kept in fp32 and the model quantized again. Query, key and value are merged into
one MatMul first, so their input is quantized once. The fused graph needs
`DefaultTensorType` set or quantization fails (FIELD_NOTES).

The search sees only the corpus's selection part and stops when that clears the
gate by `INT8_MARGIN`; the file is then judged, once, on the judging part
(`corpus.judge`), which it must pass too. Static int8 (`static_int8`) goes
through the same search and judgement.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..export import EXTERNAL_DATA_BYTES
from .accuracy import Agreement, agreement
from .corpus import Judgement, RealText, judge
from .merge_projections import merge_projections
from .runtimes import onnxruntime_runner

INT8_NAME = "model.int8.onnx"
QUANTIZED_OPS = ("MatMul", "Attention")
# How far above the int8 gate (token, sentence cosine means) the selection part must
# be for the judging part to pass: measured with MiniLM (docs/performance.md).
INT8_MARGIN = (0.001, 0.0005)
Quantizer = Callable[[Path, Path, list[str]], Path]  # (source, target, keep_fp32)


@dataclass
class QuantizeResult:
    agreement: Agreement
    quantized: int  # nodes quantized
    kept_fp32: list[str] = field(default_factory=list)  # in the order they were taken out
    merged: int = 0  # groups of projections merged into one MatMul before quantizing
    judged: Judgement | None = None  # on the judging part, which the search never saw


def quantize_int8(source: str | Path, target: str | Path,
                  keep_fp32: list[str] | None = None) -> Path:
    """Per-channel dynamic int8 of every Attention and MatMul except `keep_fp32`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=keep_fp32 or [],
                     use_external_data_format=is_large(source),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    drop_shape_annotations(target)
    return Path(target)


def is_large(path: str | Path) -> bool:
    """Whether the model at `path` keeps (or should keep) its weights in external data."""
    path = Path(path)
    return (path.stat().st_size > EXTERNAL_DATA_BYTES
            or (path.parent / (path.name + ".data")).is_file())


def drop_shape_annotations(path: str | Path) -> None:
    """Remove the intermediate shapes the quantizer wrote into the graph.

    With them onnxruntime (1.32) sees that each residual Add's inputs match and fuses
    Add + LayerNormalization into SkipLayerNormalization at load, whose CPU kernel is
    5x slower than the pair (bert-base int8: 23.5 ms against 20.3 ms at 1x128).
    Without them it keeps the pair; the weights are not touched.
    """
    model = onnx.load(str(path), load_external_data=False)
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def quantize_within_gate(source: str | Path, target: str | Path, text: RealText,
                         quantize: Quantizer | None = None,
                         margin: tuple[float, float] = INT8_MARGIN) -> QuantizeResult:
    """Quantize as much as the cosine gate (raised by `margin`) allows on the selection
    part of the real text, then judge the file on the judging part.

    Args:
        quantize: writes the int8 file keeping the named nodes in fp32; dynamic by default.
    """
    return quantize_each_within_gate(source, {Path(target): quantize or quantize_int8}, text,
                                     margin)[Path(target)]


def quantize_each_within_gate(source: str | Path, targets: dict[Path, Quantizer],
                              text: RealText, margin: tuple[float, float] = INT8_MARGIN,
                              max_kept_share: dict[Path, float] | None = None
                              ) -> dict[Path, QuantizeResult]:
    """`quantize_within_gate` for several quantizers (dynamic, static) of one source,
    which is merged and ranked once for all of them.

    Args:
        max_kept_share: per target, the share of nodes the search may keep in fp32
            before it gives up (the result then misses the gate); all by default.
    """
    inputs, expected = text.selection.inputs, text.selection.expected
    results = {}
    with tempfile.TemporaryDirectory(dir=next(iter(targets)).parent) as scratch:
        model = onnx.load(str(source))
        merged = merge_projections(model)
        large = is_large(source)
        source = Path(scratch) / "merged.onnx"
        onnx.save(model, str(source), save_as_external_data=large, location="merged.onnx.data")
        del model
        ranking = activation_errors(source, inputs)
        for target, quantize in targets.items():
            limit = int(len(ranking) * (max_kept_share or {}).get(target, 1.0))
            keep: list[str] = []
            # One step per node kept, not a galloping search (k = 0, 1, 2, 4, ... then bisect):
            # on MiniLM (3 dynamic, 8 static kept) that saved one step of 13 in all, and the
            # kept set would no longer be the shortest prefix of the ranking that clears.
            while True:
                quantize(source, target, keep)
                result = agreement(target, inputs, expected)
                if result.clears(margin) or len(keep) >= limit:
                    break
                keep.append(ranking[len(keep)][0])
            judged = judge(target.name, onnxruntime_runner(target), text)
            results[target] = QuantizeResult(result, len(ranking) - len(keep), keep, merged,
                                              judged)
    return results


def activation_errors(source: str | Path, inputs: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """Quantizable nodes by the relative error uint8 quantization puts on their input."""
    import onnxruntime as ort

    model = onnx.load(str(source))
    constants = {t.name for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in QUANTIZED_OPS
             and (n.op_type == "Attention" or n.input[1] in constants)]
    watched = list(dict.fromkeys(n.input[0] for n in nodes))
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                  None)
                              for name in watched if name not in outputs)
    with tempfile.TemporaryDirectory() as scratch:
        # A file with external data, not bytes: protobuf cannot serialise 2 GiB.
        path = Path(scratch) / "watched.onnx"
        onnx.save(model, str(path), save_as_external_data=True, location="watched.onnx.data")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        values = dict(zip(watched, session.run(watched, inputs), strict=True))
        del session
    errors = [(n.name, _uint8_error(values[n.input[0]])) for n in nodes]
    return sorted(errors, key=lambda item: -item[1])


def _uint8_error(x: np.ndarray) -> float:
    """Relative error of onnxruntime's dynamic (per-tensor, asymmetric) uint8 quantization."""
    x = x.astype(np.float64)
    low, high = min(x.min(), 0.0), max(x.max(), 0.0)
    scale = (high - low) / 255 or 1.0
    zero = np.round(-low / scale)
    restored = (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale
    return float(np.linalg.norm(x - restored) / (np.linalg.norm(x) or 1.0))
