"""Find shapes frozen from the export dummy in an ONNX encoder, prove them, point at the source.

`check(path_or_model) -> Report` returns data and never prints; `python -m
diagnostics check MODEL.onnx` is the command-line front end.
"""

from __future__ import annotations

from .checker import check
from .errors import DiagnosticsError
from .findings import (
    Finding,
    FrozenValue,
    InvarianceRun,
    Probe,
    ProbeRun,
    Report,
    Skip,
    Source,
    SymbolInfo,
    TensorInfo,
)
from .netron_view import NetronView, open_in_netron
from .repair_results import RepairReport
from .repairer import repair

__all__ = [
    "DiagnosticsError",
    "Finding",
    "FrozenValue",
    "InvarianceRun",
    "NetronView",
    "Probe",
    "ProbeRun",
    "Report",
    "Skip",
    "Source",
    "SymbolInfo",
    "TensorInfo",
    "check",
    "repair",
    "RepairReport",
    "open_in_netron",
]
