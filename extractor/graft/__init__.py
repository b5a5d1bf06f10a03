"""The graft room: an extractor output's ONNX encoder back inside the live model it came from.

`encoder.OnnxEncoder` stands in for the Hugging Face encoder; `swap.graft` puts it in place
of a named sub-module (`ungraft`, `grafted` put the original back); `verify.verify_graft`
runs the parent both ways and compares every output. The names are offered here.
"""

from __future__ import annotations

from .encoder import ONNX_FILES, OnnxEncoder, max_sequence
from .swap import graft, grafted, output_mismatch, ungraft
from .verify import GraftReport, OutputComparison, load_factory, verify_graft

__all__ = [
    "ONNX_FILES",
    "GraftReport",
    "OnnxEncoder",
    "OutputComparison",
    "graft",
    "grafted",
    "load_factory",
    "max_sequence",
    "output_mismatch",
    "ungraft",
    "verify_graft",
]
