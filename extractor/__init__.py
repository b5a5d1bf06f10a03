"""Take a transformer encoder out of a composite checkpoint and export verified dynamic ONNX.

The steps are plain functions that return data and never print; `extract` runs
them all. `python -m extractor` is the command-line front end.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .architecture import ResolvedConfig, resolve_config  # noqa: E402
from .checkpoint import Checkpoint, find_state_dict, load_checkpoint, strip_prefix  # noqa: E402
from .encoders import EncoderMatch, encoder_class, find_encoders  # noqa: E402
from .errors import ExtractorError  # noqa: E402
from .export import ExportSettings, export_onnx  # noqa: E402
from .graft import (  # noqa: E402
    GraftReport,
    OnnxEncoder,
    graft,
    grafted,
    ungraft,
    verify_graft,
)
from .merge_projections import merge_projections  # noqa: E402
from .model import KeyReport, build_model, load_saved_model  # noqa: E402
from .optimize import OptimizeResult, optimize_onnx  # noqa: E402
from .parity import ParityReport, compare_onnx, parity_cases, reference_outputs  # noqa: E402
from .pipeline import ExtractionReport, extract  # noqa: E402
from .prefixes import PrefixInfo, choose_prefix, encoder_prefixes, prefix_summary  # noqa: E402
from .quantize import QuantizeResult, quantize_int8, quantize_within_gate  # noqa: E402
from .speed import Timing, benchmark  # noqa: E402

__all__ = [
    "Checkpoint",
    "EncoderMatch",
    "ExportSettings",
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
