"""Static int8 in onnxruntime: QDQ, per-channel weights, activation ranges fixed ahead.

Dynamic int8 scales each MatMul's input by the max of the batch it is in, so a
sentence's embedding depends on its batch-mates; static ranges, calibrated once on
the corpus's selection part (each sentence alone), make every row's arithmetic its
own. Only MatMuls with constant weights are quantized; the gate search in
`quantize.quantize_within_gate` keeps the ones it must in fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from .quantize import Quantizer, drop_shape_annotations, is_large
from .restore_fp32 import restore_fp32

STATIC_INT8_NAME = "model.int8.static.onnx"


def static_quantizer(samples: list[dict[str, np.ndarray]]) -> Quantizer:
    """A `Quantizer` for `quantize_within_gate` that quantizes every candidate once, at its
    first call (ranges calibrated on `samples`), and derives each step of the search from
    that file by `restore_fp32`; both the file and the ranges are cached beside the source.

    Re-quantizing cost MiniLM 1.1-1.9 s a step, mostly onnxruntime's per-channel weight
    quantization in Python; the edit is a load and a save, 0.3-0.7 s.
    """
    def quantize(source: Path, target: Path, keep_fp32: list[str]) -> Path:
        every = source.parent / (source.name + ".qdq.onnx")
        if not every.is_file():
            quantize_static_int8(source, every, samples,
                                 cache=source.parent / (source.name + ".ranges.json"))
        return restore_fp32(every, source, target, keep_fp32)
    return quantize


def quantize_static_int8(source: str | Path, target: str | Path,
                         samples: list[dict[str, np.ndarray]],
                         keep_fp32: list[str] | None = None, cache: Path | None = None
                         ) -> Path:
    """QDQ int8 (uint8 activations, per-channel int8 weights), MinMax ranges on `samples`
    (or read from `cache` when that file exists; written there otherwise)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = onnx.load(str(source), load_external_data=False).graph
    wanted = {i.name for i in graph.input}
    constants = {t.name for t in graph.initializer}
    keep = set(keep_fp32 or [])
    # Only weight MatMuls' inputs: quantizing their outputs (before the bias and the
    # residual) or the attention MatMuls took MiniLM from 0.985 to 0.88 token cosine.
    weights = [n.name for n in graph.node if n.op_type == "MatMul"
               and n.input[1] in constants and n.name not in keep]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = iter([{k: v for k, v in s.items() if k in wanted} for s in samples])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.samples, None)

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], nodes_to_quantize=weights, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    use_external_data_format=is_large(source), calibration_cache_path=cache,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                   "OpTypesToExcludeOutputQuantization": ["MatMul"]})
    drop_shape_annotations(target)
    return Path(target)
