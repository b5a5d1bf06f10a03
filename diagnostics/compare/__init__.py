"""Compare an ONNX model with the PyTorch module it came from, module by module.

`compare(model, reference) -> CompareReport` runs both on the same inputs, the ONNX
graph with its intermediate values exposed and the module with a forward hook on
every submodule; aligns each module's output with the ONNX value that leaves its
scope (the exporters record scopes: the dynamo exporter in `metadata_props`, the
TorchScript exporter in node names); and names the first module whose output
diverges while its inputs agree, with the ONNX nodes inside it, its source line and
a cause where one can be shown. Modules that cannot be aligned are listed, never
guessed.

Rooms: `reference` (load REF), `capture` (hooks; exposed ONNX values), `align`
(scopes -> modules -> values), `judge` (errors, first divergence), `causes`
(what inside a module explains it), `results` (the data returned).
"""
