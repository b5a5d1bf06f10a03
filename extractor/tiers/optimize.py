"""Fuse transformer blocks with onnxruntime's optimizer so the export runs fast on CPU.

The optimizer fuses attention only in graphs it recognises: the TorchScript
exporter's graph of eager attention (FIELD_NOTES: Attention 12 on bert-base; 0 on
the torch.export-based graph). A fusion that finds no attention is a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ..export import EXTERNAL_DATA_BYTES
from ..resolve.architecture import attention_heads

FUSED_OPS = ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu")
OPTIMIZED_NAME = "model.optimized.onnx"


@dataclass
class OptimizeResult:
    """Fused-op counts of one optimized model; `ok` only when attention was fused."""

    path: Path
    fused: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.fused.get("Attention", 0) > 0

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path.name, "fused": self.fused, "ok": self.ok}


def optimize_onnx(source: str | Path, target: str | Path, config: Any) -> OptimizeResult:
    """Apply onnxruntime's transformer fusions (graph level 1, CPU) to `source`."""
    from onnxruntime.transformers.optimizer import optimize_model

    hidden = getattr(config, "hidden_size", None) or config.dim
    optimized = optimize_model(
        str(source),
        model_type="bert",
        num_heads=attention_heads(config),
        hidden_size=hidden,
        opt_level=1,
        use_gpu=False,
    )
    counts = optimized.get_fused_operator_statistics()
    # Keep the extractor's metadata (dummy sizes, exporter) on the optimized graph.
    original = onnx.load(str(source), load_external_data=False)
    keep = {p.key: p.value for p in original.metadata_props}
    model = optimized.model
    del model.metadata_props[:]
    for key, value in keep.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target), save_as_external_data=model.ByteSize() > EXTERNAL_DATA_BYTES,
              location=Path(target).name + ".data")
    return OptimizeResult(Path(target), {op: counts.get(op, 0) for op in FUSED_OPS})
