"""The tiers room: the faster and smaller files beside `model.onnx`, each behind its gate.

`optimize` (onnxruntime fusions), `merge_projections` (Q/K/V in one MatMul), `quantize`
(int8 within `accuracy`'s gate on real text), and `runtimes`, which opens every file in
the runtime it is meant for. `extractor.variants` chooses which of them to write.
"""
