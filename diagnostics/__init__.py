"""Find shapes frozen from the export dummy in an ONNX encoder, prove them, point at the source.

`check(path_or_model) -> Report` returns data and never prints; `python -m
diagnostics check MODEL.onnx` is the command-line front end. `compare(model, reference)
-> CompareReport` compares the model with its PyTorch module, module by module. Public names load
their module on first use (`lazy_exports`).
"""

from __future__ import annotations

from .lazy_exports import export_lazily

export_lazily(__name__, {
    "check": "checker", "DiagnosticsError": "errors",
    **dict.fromkeys(("Finding", "FrozenValue", "InvarianceRun", "Probe", "ProbeRun", "Report",
                     "Skip", "Source", "SymbolInfo", "TensorInfo"), "findings"),
    "NetronView": "view.netron", "open_in_netron": "view.netron",
    "Report.open_in_netron": "view.netron",  # the view's, not the data's: loads on first call
    "RepairReport": "repair.results", "repair": "repair.plan", "RepairOptions": "repair.options",
    "compare": "compare.judge", "CompareReport": "compare.results",
})

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
    "compare",
    "CompareReport",
    "repair",
    "RepairOptions",
    "RepairReport",
    "open_in_netron",
]
