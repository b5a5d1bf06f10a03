"""Exports of a tiny BERT that differ from their PyTorch reference in one known place.

Each case edits a healthy export after the fact, so the module that differs is known
exactly: one layer's weight perturbed, one LayerNorm's epsilon changed, the whole
file quantized to int8 (meant to differ everywhere, a little). Two more differ by the
real mechanisms, one module's forward patched before a TorchScript export: a length
taken as a Python int into arithmetic, and floor_divide (which ONNX truncates).
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from diagnostics.analysis.source import node_source
from extractor.export import export_onnx

from .tiny_encoders import tiny_encoder

LAYERS = 3
DENSE = "encoder.layer.1.attention.output.dense"
NORM = "encoder.layer.1.attention.output.LayerNorm"


def reference(directory: Path):
    """The tiny BERT (3 layers), saved as a Hugging Face model directory; (model, dir)."""
    model = tiny_encoder("bert", num_hidden_layers=LAYERS)
    path = directory / "reference"
    model.save_pretrained(path)
    return model, path


def _divide_by_python_length(self, hidden_states, input_tensor):
    """BertSelfOutput.forward, its dense output divided by the length as a Python int: the
    trace records the dummy's 17 as a constant Div operand."""
    hidden_states = self.dense(hidden_states) / int(hidden_states.size(1)) * 8
    return self.LayerNorm(self.dropout(hidden_states) + input_tensor)


def _floor_divide(self, hidden_states):
    """BertIntermediate.forward plus a floor_divide term: PyTorch floors, the TorchScript
    export truncates (Div, Cast to int64), so negative quotients are 1 off."""
    hidden_states = self.dense(hidden_states)
    steps = torch.floor_divide(hidden_states, 0.25) * 0.25
    return self.intermediate_act_fn(hidden_states) + 0.1 * steps


def arithmetic_case(directory: Path, kind: str):
    """A tiny BERT with one module's forward patched (`"python-length"`: layer 1's
    attention output divides by `int(x.size(1))`; `"floor-divide"`: layer 1's
    intermediate adds a floor_divide term), exported by TorchScript; (model, path, module).
    The model is the reference: its forward is the patched one at every length."""
    model = tiny_encoder("bert", num_hidden_layers=LAYERS)
    layer = model.encoder.layer[1]
    if kind == "python-length":
        target, name = layer.attention.output, "encoder.layer.1.attention.output"
        target.forward = types.MethodType(_divide_by_python_length, target)
    else:
        target, name = layer.intermediate, "encoder.layer.1.intermediate"
        target.forward = types.MethodType(_floor_divide, target)
    return model, export(model, directory / kind, "torchscript"), name


def export(model, directory: Path, exporter: str) -> Path:
    path = directory / exporter / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, path, exporter=exporter, external_data=True)
    return path


def _in_scope(node: onnx.NodeProto, module: str) -> bool:
    scope = node_source(node).module or ""
    return scope == module or scope.endswith("." + module)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")
    return path


def perturbed_weight(source: Path, target: Path, module: str = DENSE, scale: float = 0.05
                     ) -> Path:
    """`source` with the weight of `module`'s MatMul/Gemm shifted by noise of `scale`."""
    model = onnx.load(str(source))
    initializers = {t.name: t for t in model.graph.initializer}
    node = next(n for n in model.graph.node
                if n.op_type in ("MatMul", "Gemm") and _in_scope(n, module))
    weight = next(initializers[v] for v in node.input if v in initializers)
    values = numpy_helper.to_array(weight)
    noise = np.random.default_rng(0).standard_normal(values.shape).astype(values.dtype) * scale
    weight.CopyFrom(numpy_helper.from_array(values + noise, weight.name))
    return _save(model, target)


def changed_epsilon(source: Path, target: Path, module: str = NORM, epsilon: float = 0.5
                    ) -> Path:
    """`source` with `module`'s LayerNormalization epsilon set to `epsilon`."""
    model = onnx.load(str(source))
    node = next(n for n in model.graph.node
                if n.op_type == "LayerNormalization" and _in_scope(n, module))
    for attribute in node.attribute:
        if attribute.name == "epsilon":
            attribute.f = epsilon
            break
    else:
        node.attribute.append(onnx.helper.make_attribute("epsilon", epsilon))
    return _save(model, target)


def quantized(source: Path, target: Path) -> Path:
    """`source` through onnxruntime's dynamic int8 quantization (weights inline)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


def fused(source: Path, target: Path, heads: int = 4, hidden: int = 32) -> Path:
    """`source` through onnxruntime's transformer fusions (Attention, SkipLayerNormalization,
    ...), which replace several modules' nodes with one."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", num_heads=heads,
                               hidden_size=hidden)
    return _save(optimized.model, target)
