"""Propagation rules for the ops that compute on tensors: MatMul, Gemm, reductions,
normalisations and activations keep or drop axes; convolutions, pools and Resize compute
their spatial sizes by formula (the input's symbol where the formula is the identity, an
exact derived size otherwise).
"""

from __future__ import annotations

import onnx

from ..limits import MAX_VALUES, product
from .dims import UNKNOWN, Dim, floor_div, lit
from .propagate_common import attr, input_at, read_axes
from .state import SymbolState


def propagate_matmul(it: SymbolState, node: onnx.NodeProto) -> None:
    a, b = it.shape(node.input[0]), it.shape(node.input[1])
    if a is None or b is None or not a or not b:
        it.shapes[node.output[0]] = None
        return
    a2 = a if len(a) > 1 else [lit(1)] + a
    b2 = b if len(b) > 1 else b + [lit(1)]
    it.unify(node, [a2[-1], b2[-2]], broadcast=False)
    batch = it.broadcast(node, [a2[:-2], b2[:-2]]) or []
    out = batch + ([a2[-2]] if len(a) > 1 else []) + ([b2[-1]] if len(b) > 1 else [])
    it.shapes[node.output[0]] = out


def propagate_gemm(it: SymbolState, node: onnx.NodeProto) -> None:
    a, b = it.shape(node.input[0]), it.shape(node.input[1])
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        it.shapes[node.output[0]] = None
        return
    rows = a[1] if attr(node, "transA", 0) else a[0]
    cols = b[0] if attr(node, "transB", 0) else b[1]
    it.shapes[node.output[0]] = [rows, cols]


def propagate_reduce(it: SymbolState, node: onnx.NodeProto) -> None:
    shape = it.shape(node.input[0])
    axes = read_axes(it, node)
    keep = int(attr(node, "keepdims", 1))
    if shape is None or (axes is None and input_at(node, 1)):
        it.shapes[node.output[0]] = None
        return
    chosen = {a % len(shape) for a in axes} if axes else set(range(len(shape)))
    if keep:
        it.shapes[node.output[0]] = [lit(1) if i in chosen else d for i, d in enumerate(shape)]
    else:
        it.shapes[node.output[0]] = [d for i, d in enumerate(shape) if i not in chosen]


def propagate_layer_norm(it: SymbolState, node: onnx.NodeProto) -> None:
    it.shapes[node.output[0]] = it.shape(node.input[0])
    for name in node.output[1:]:
        it.shapes[name] = None


def propagate_softmax_like(it: SymbolState, node: onnx.NodeProto) -> None:
    it.shapes[node.output[0]] = it.shape(node.input[0])
    for name in node.output[1:]:
        it.shapes[name] = None


def propagate_conv(it: SymbolState, node: onnx.NodeProto) -> None:
    """Conv, ConvTranspose and the pools: batch passes through, spatial sizes by formula.

    A spatial size that stays a symbol's (stride 1, padding that undoes the kernel) is
    that symbol; any other computed from a symbol is a derived size, its exact formula
    (`floor((frames + 1)/2)`), with its dummy size where known.
    """
    x = it.shape(node.input[0])
    weight = it.shape(input_at(node, 1)) if node.op_type in ("Conv", "ConvTranspose") else None
    if x is None or len(x) < 3:
        it.shapes[node.output[0]] = None
        return
    spatial = len(x) - 2
    kernel = attr(node, "kernel_shape")
    if kernel is None and weight is not None and len(weight) == len(x):
        kernel = [d.literal for d in weight[2:]]
    if node.op_type.startswith("Global"):
        it.shapes[node.output[0]] = [x[0], x[1]] + [lit(1)] * spatial
        return
    if kernel is None or None in kernel:
        it.shapes[node.output[0]] = [x[0]] + [UNKNOWN] * (len(x) - 1)
        return
    strides = list(attr(node, "strides", [1] * spatial))
    dilations = list(attr(node, "dilations", [1] * spatial))
    pads = list(attr(node, "pads", [0] * 2 * spatial))
    auto_pad = attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    ceil_mode = bool(attr(node, "ceil_mode", 0))
    if node.op_type == "Conv":
        channels = weight[0] if weight else UNKNOWN
    elif node.op_type == "ConvTranspose":
        group = int(attr(node, "group", 1))
        channels = Dim(weight[1].expr * lit(group).expr) if weight and weight[1].expr else UNKNOWN
    else:
        channels = x[1]
    out = [x[0], channels]
    output_shape = attr(node, "output_shape")
    for axis in range(spatial):
        k, s, d = kernel[axis], strides[axis], dilations[axis]
        padding = pads[axis] + pads[axis + spatial]
        if output_shape is not None:
            out.append(lit(int(output_shape[axis])))
        elif node.op_type == "ConvTranspose":
            extra = list(attr(node, "output_padding", [0] * spatial))[axis]
            out.append(_affine(it, x[2 + axis], s, extra + (k - 1) * d + 1 - padding - s, 1,
                               False, transpose=True))
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(_affine(it, x[2 + axis], 1, 0, s, True))  # ceil(x / s)
        else:
            if auto_pad == "VALID":
                padding = 0
            out.append(_affine(it, x[2 + axis], 1, padding - d * (k - 1) - 1, s, ceil_mode,
                               plus_one=True))
    it.shapes[node.output[0]] = out


def _affine(it: SymbolState, size: Dim, scale: int, offset: int, stride: int, ceil: bool,
            plus_one: bool = False, transpose: bool = False) -> Dim:
    """floor((scale*size + offset) / stride) (+ 1): literally, as the same symbol, or derived.

    A derived size is exact and canonical (`dims.floor_div`), so a convolution's output and
    the same size computed as `x // s` are one atom.
    """
    if plus_one:  # floor((x + o)/s) + 1 == floor((x + o + s)/s)
        offset, plus_one = offset + stride, False

    def apply(value: int) -> int:
        top = scale * value + offset
        return -(-top // stride) if ceil else top // stride

    if size.literal is not None:
        return lit(apply(size.literal))
    if size.expr is None:
        return UNKNOWN
    if scale == 1 and stride == 1 and offset == 0:
        return size
    value = scale * size.expr.sympy + offset
    if not transpose:
        value = floor_div(value, stride, ceil)
    return it.derive(value, parts=[size.expr])


def propagate_resize(it: SymbolState, node: onnx.NodeProto) -> None:
    """Output sizes from `sizes` (symbolic where computed) or from literal `scales`."""
    x = it.shape(node.input[0])
    sizes = it.value(input_at(node, 3)) if input_at(node, 3) else None
    if sizes is not None and (x is None or len(sizes) == len(x)):
        it.shapes[node.output[0]] = list(sizes)
        return
    scales_name = input_at(node, 2)
    tensor = it.initializers.get(scales_name) if scales_name else None
    small = tensor is not None and product(tensor.dims) <= MAX_VALUES  # one scale per axis
    scales = it.read_tensor(tensor) if small else None
    if x is None or scales is None or len(scales.reshape(-1)) != len(x):
        it.shapes[node.output[0]] = None if x is None else [UNKNOWN] * len(x)
        return
    out = []
    for dim, scale in zip(x, scales.reshape(-1).tolist(), strict=True):
        if scale == 1:
            out.append(dim)
        elif dim.literal is not None:
            out.append(lit(int(dim.literal * scale)))
        elif float(scale).is_integer() and dim.expr is not None:
            out.append(Dim(dim.expr * lit(int(scale)).expr))
        else:
            out.append(UNKNOWN)
    it.shapes[node.output[0]] = out
