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
    "ResolvedConfig": "resolve.architecture", "resolve_config": "resolve.architecture",
    "Checkpoint": "resolve.checkpoint", "load_checkpoint": "resolve.checkpoint",
    "find_state_dict": "resolve.state_dicts", "strip_prefix": "resolve.state_dicts",
    "open_checkpoint": "resolve.opening",
    "EncoderMatch": "resolve.encoders", "encoder_class": "resolve.encoders",
    "find_encoders": "resolve.encoders",
    "ExtractorError": "errors",
    "ExportSettings": "export", "export_onnx": "export",
    "GraftReport": "graft.verify", "verify_graft": "graft.verify",
    "OnnxEncoder": "graft.encoder",
    "graft": "graft.swap", "grafted": "graft.swap", "ungraft": "graft.swap",
    "merge_projections": "tiers.merge_projections",
    "KeyReport": "resolve.keys", "compare_keys": "resolve.keys",
    "build_model": "resolve.model", "load_saved_model": "resolve.model",
    "OptimizeResult": "tiers.optimize", "optimize_onnx": "tiers.optimize",
    "ExtractOptions": "options",
    "ParityReport": "parity", "compare_onnx": "parity", "parity_cases": "parity",
    "reference_outputs": "parity",
    "ExtractionReport": "pipeline", "extract": "pipeline",
    "PrefixInfo": "resolve.prefixes", "choose_prefix": "resolve.prefixes",
    "encoder_prefixes": "resolve.prefixes",
    "prefix_summary": "resolve.prefixes",
    "QuantizeResult": "tiers.quantize", "quantize_int8": "tiers.quantize",
    "quantize_within_gate": "tiers.quantize",
    "Timing": "bench.speed", "benchmark": "bench.speed",
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
    "open_checkpoint",
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
