"""The tiers room: the faster and smaller files beside `model.onnx`, each behind its gate.

`optimize` (onnxruntime fusions), `merge_projections` (Q/K/V in one MatMul), `quantize`
(dynamic int8 within `accuracy`'s gate) and `static_int8` (QDQ int8, fixed ranges, whose
search steps `restore_fp32` derives by a graph edit), both selected on one part of
`corpus`'s real text and judged on another, in each language the model's tokenizer reads
(`languages`), and `runtimes`, which opens every file in the runtime it is meant for.
`extractor.variants` chooses which of them to write.
"""
