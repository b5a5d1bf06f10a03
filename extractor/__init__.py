"""Take a transformer encoder out of a composite checkpoint and export verified dynamic ONNX.

The steps are plain functions that return data and never print; `extract` runs
them all. `python -m extractor` is the command-line front end. Public names load
their module on first use (`diagnostics.lazy_exports`): the CLI's help and usage
errors need neither torch nor transformers.
"""

from __future__ import annotations

__version__ = "0.1.0"

from diagnostics.lazy_exports import export_lazily  # noqa: E402

export_lazily(__name__, {
    "ResolvedConfig": "architecture", "resolve_config": "architecture",
    "Checkpoint": "checkpoint", "find_state_dict": "checkpoint",
    "load_checkpoint": "checkpoint", "strip_prefix": "checkpoint",
    "EncoderMatch": "encoders", "encoder_class": "encoders", "find_encoders": "encoders",
    "ExtractorError": "errors",
    "ExportSettings": "export", "export_onnx": "export",
    "GraftReport": "graft", "OnnxEncoder": "graft", "graft": "graft", "grafted": "graft",
    "ungraft": "graft", "verify_graft": "graft",
    "merge_projections": "merge_projections",
    "KeyReport": "keys", "compare_keys": "keys",
    "build_model": "model", "load_saved_model": "model",
    "OptimizeResult": "optimize", "optimize_onnx": "optimize",
    "ExtractOptions": "options",
    "ParityReport": "parity", "compare_onnx": "parity", "parity_cases": "parity",
    "reference_outputs": "parity",
    "ExtractionReport": "pipeline", "extract": "pipeline",
    "PrefixInfo": "prefixes", "choose_prefix": "prefixes", "encoder_prefixes": "prefixes",
    "prefix_summary": "prefixes",
    "QuantizeResult": "quantize", "quantize_int8": "quantize",
    "quantize_within_gate": "quantize",
    "Timing": "speed", "benchmark": "speed",
})

__all__ = [
    "Checkpoint",
    "EncoderMatch",
    "ExportSettings",
    "ExtractOptions",
    "ExtractionReport",
    "ExtractorError",
    "GraftReport",
    "KeyReport",
    "OnnxEncoder",
    "OptimizeResult",
    "ParityReport",
    "PrefixInfo",
    "QuantizeResult",
    "ResolvedConfig",
    "Timing",
    "benchmark",
    "build_model",
    "choose_prefix",
    "compare_keys",
    "compare_onnx",
    "encoder_class",
    "encoder_prefixes",
    "export_onnx",
    "extract",
    "find_encoders",
    "find_state_dict",
    "graft",
    "grafted",
    "load_checkpoint",
    "load_saved_model",
    "merge_projections",
    "optimize_onnx",
    "parity_cases",
    "prefix_summary",
    "quantize_int8",
    "quantize_within_gate",
    "reference_outputs",
    "resolve_config",
    "strip_prefix",
    "ungraft",
    "verify_graft",
]
