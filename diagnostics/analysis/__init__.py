"""The analysis room: what a graph computes, without weights and without running it.

`symbols.interpret` propagates the input symbols (`batch`, `sequence`, ...) through every
node (`op_rules` for the ops we model, `onnx_fallback` for the rest, on `state`'s
`SymbolState` of `dims`' `Dim`s); `frozen.find_frozen` judges each shape-consuming node
(`frozen_reshape`, `frozen_slice_resize`); `signature.read_signature` reads the inputs and
the export dummy; `source.node_source` maps a node back to its PyTorch module and line.
Nothing here runs the model (that is `probe`) or edits it (that is `repair`).
"""
