"""One propagation rule per ONNX op: output shapes (and small integer values) from the inputs'.

This is the table the interpreter (`symbols`) dispatches on; the rules live by op family
(`propagate_values`, `propagate_layout`, `propagate_compute`). A rule reads and writes
the interpreter's state (`symbol_state`) and nothing above it. A rule that cannot tell
leaves the dim unknown; where dims must agree it goes through `SymbolState.unify`, which
records a literal meeting a symbol as a conflict.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from .propagate_compute import (
    propagate_conv,
    propagate_gemm,
    propagate_layer_norm,
    propagate_matmul,
    propagate_reduce,
    propagate_resize,
    propagate_softmax_like,
)
from .propagate_layout import (
    propagate_concat,
    propagate_expand,
    propagate_flatten,
    propagate_gather,
    propagate_gather_nd,
    propagate_reshape,
    propagate_slice,
    propagate_split,
    propagate_squeeze,
    propagate_tile,
    propagate_transpose,
    propagate_unsqueeze,
)
from .propagate_values import (
    propagate_cast,
    propagate_constant,
    propagate_constant_of_shape,
    propagate_elementwise,
    propagate_range,
    propagate_same,
    propagate_shape,
    propagate_size,
)
from .state import SymbolState

HANDLERS: dict[str, Callable[[SymbolState, onnx.NodeProto], None]] = {
    "Constant": propagate_constant,
    "Shape": propagate_shape,
    "Size": propagate_size,
    "Gather": propagate_gather,
    "GatherND": propagate_gather_nd,
    "Unsqueeze": propagate_unsqueeze,
    "Squeeze": propagate_squeeze,
    "Concat": propagate_concat,
    "Slice": propagate_slice,
    "Reshape": propagate_reshape,
    "Transpose": propagate_transpose,
    "MatMul": propagate_matmul,
    "Gemm": propagate_gemm,
    "Flatten": propagate_flatten,
    "ConstantOfShape": propagate_constant_of_shape,
    "Expand": propagate_expand,
    "Tile": propagate_tile,
    "Range": propagate_range,
    "Split": propagate_split,
    "LayerNormalization": propagate_layer_norm,
    "Cast": propagate_cast,
    "CastLike": propagate_cast,
    "Identity": propagate_same,
    "Dropout": propagate_softmax_like,
}
for _op in (
    "Add Sub Mul Div Pow Mod Where Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor "
    "Max Min Sum Mean PRelu BitwiseAnd BitwiseOr"
).split():
    HANDLERS[_op] = propagate_elementwise
for _op in (
    "Relu Gelu Erf Sqrt Tanh Sigmoid Neg Not IsNaN IsInf Abs Exp Log Reciprocal Softmax "
    "LogSoftmax Ceil Floor Round Sign Sin Cos HardSigmoid LeakyRelu Elu Selu Softplus Clip "
    "CumSum Trilu Mish HardSwish"
).split():
    HANDLERS[_op] = propagate_softmax_like
for _op in "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2 ArgMax ArgMin".split():
    HANDLERS[_op] = propagate_reduce
for _op in ("Conv ConvTranspose ConvInteger MaxPool AveragePool LpPool GlobalAveragePool "
            "GlobalMaxPool GlobalLpPool").split():
    HANDLERS[_op] = propagate_conv
HANDLERS["Resize"] = propagate_resize
