"""Build the probe's inputs from the graph alone: text feeds, and any model's by dtype and rank.

A text encoder takes (batch, sequence) integer tensors: ids below the vocabulary the
graph's embedding table allows, masks of ones, type ids of zeros, positions counting up.
Any other model gets each input at the sizes asked for its symbols (`with_sums` fills in
symbols spelt as sums of others). The rule: every feed's size is checked against the
memory budget (`feed_fits`, `input_shapes`) before anything is allocated, so a hostile
shape is refused in one line, not by the allocator.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..errors import ResourceLimitError
from ..limits import product, too_large

DEFAULT_SIZE = 16  # the size of a dim whose symbol was given no size


def text_inputs(model: onnx.ModelProto) -> list[tuple[str, int]] | str:
    """A text encoder's inputs (name, element type), or why the model is not one."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = []
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        kind = tensor.type.tensor_type
        if len(kind.shape.dim) != 2 or kind.elem_type not in (
            onnx.TensorProto.INT64,
            onnx.TensorProto.INT32,
        ):
            return f"input {tensor.name!r} is not a (batch, sequence) integer tensor"
        inputs.append((tensor.name, kind.elem_type))
    return inputs


def text_vocab(model: onnx.ModelProto, inputs: list[tuple[str, int]]) -> int:
    """The ids the first text input may take (its embedding table's rows; 100 if unknown)."""
    return input_vocab(model).get(inputs[0][0], 100) if inputs else 100


_PASS = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Cast", "Identity"}


def input_vocab(model: onnx.ModelProto) -> dict[str, int]:
    """Graph input -> rows of the embedding table it indexes (through reshapes and casts)."""
    tables = {t.name: t.dims for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    inputs = {i.name for i in model.graph.input}
    vocab: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type != "Gather" or node.input[0] not in tables or not tables[node.input[0]]:
            continue
        name = node.input[1]
        while name not in inputs and name in producer and producer[name].op_type in _PASS:
            name = producer[name].input[0]
        if name in inputs:
            rows = int(tables[node.input[0]][0])
            vocab[name] = min(vocab.get(name, rows), rows)
    return vocab


def feed_fits(inputs, batch: int, sequence: int, budget: int | None = None) -> None:
    """Raise `ResourceLimitError` where text inputs of batch x sequence would not fit."""
    nbytes = sum(batch * sequence * (8 if elem == onnx.TensorProto.INT64 else 4)
                 for _, elem in inputs)
    problem = too_large(f"probe inputs of {batch}x{sequence}", nbytes, budget)
    if problem:
        raise ResourceLimitError(problem)


def text_feed(inputs, batch: int, sequence: int, vocab: int, seed: int,
              budget: int | None = None) -> dict[str, np.ndarray]:
    """Text inputs of batch x sequence: random ids below `vocab`, ones, zeros or positions."""
    feed_fits(inputs, batch, sequence, budget)
    rng = np.random.default_rng(seed + 1000 * batch + sequence)
    feed = {}
    for name, elem in inputs:
        dtype = np.int64 if elem == onnx.TensorProto.INT64 else np.int32
        if "mask" in name:
            value = np.ones((batch, sequence), dtype)
        elif "type" in name:
            value = np.zeros((batch, sequence), dtype)
        elif "position" in name:
            value = np.tile(np.arange(sequence, dtype=dtype), (batch, 1))
        else:
            value = rng.integers(min(3, vocab - 1), vocab, (batch, sequence)).astype(dtype)
        feed[name] = value
    return feed


def with_sums(signature, sizes: dict[str, int]) -> dict[str, int]:
    """Symbols spelt as sums of others (`past_sequence + sequence`) get their sum."""
    sizes = dict(sizes)
    for symbol in signature.symbols:
        parts = [p.strip() for p in symbol.name.split("+")]
        if len(parts) > 1 and all(p in sizes for p in parts):
            sizes.setdefault(symbol.name, sum(sizes[p] for p in parts))
    return sizes


def unbuildable(model: onnx.ModelProto) -> str | None:
    """Why the probe cannot build the model's inputs (strings, sequences, maps), or None."""
    initializers = {t.name for t in model.graph.initializer}
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        kind = tensor.type.WhichOneof("value")
        if kind != "tensor_type":
            return (f"input {tensor.name!r} is a {kind or 'untyped value'}, not a tensor: the "
                    "probe cannot build it (give --inputs)")
        elem = tensor.type.tensor_type.elem_type
        if elem == onnx.TensorProto.STRING or elem not in _NUMERIC:
            return (f"input {tensor.name!r} holds {onnx.TensorProto.DataType.Name(elem)}: the "
                    "probe cannot build it (give --inputs)")
    return None


_NUMERIC = {t for t in onnx.TensorProto.DataType.values()
            if t not in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING)}


def input_shapes(model: onnx.ModelProto, signature, sizes: dict[str, int],
                 budget: int | None = None) -> dict[str, list[int]]:
    """Each input's shape at `sizes`; `ResourceLimitError` where all of them would not fit."""
    elem = {t.name: t.type.tensor_type.elem_type for t in model.graph.input}
    shapes, nbytes = {}, 0
    for name, dims in signature.seeds.items():
        shape = []
        for dim in dims:
            if dim.literal is not None:
                shape.append(dim.literal)
            else:
                value = sizes.get(str(dim.expr))
                shape.append(value if value is not None else DEFAULT_SIZE)
        shapes[name] = shape
        size = np.dtype(helper.tensor_dtype_to_np_dtype(elem[name])).itemsize
        if product(d for d in shape if d) * max(size, 8) >= 2**62:  # even if empty
            raise ResourceLimitError(f"probe input {name!r} {shape} is past what numpy can "
                                     "index (2**62 bytes, zero dims aside)")
        nbytes += product(shape) * max(size, 8)  # random floats are drawn as float64 first
    listed = "; ".join(f"{n} {s}" for n, s in list(shapes.items())[:3])
    problem = too_large(f"probe inputs ({listed[:200]})", nbytes, budget)
    if problem:
        raise ResourceLimitError(problem)
    return shapes


def any_feed(model: onnx.ModelProto, signature, sizes: dict[str, int], seed: int,
             budget: int | None = None) -> tuple[dict[str, np.ndarray], set[str]]:
    """Inputs from each input's dtype and rank at `sizes`, and the names batched on axis 0;
    `ResourceLimitError` before anything is built where they would not fit `budget`."""
    rng = np.random.default_rng(seed + sum(sizes.values()))
    vocab = input_vocab(model)
    feed, batched = {}, set()
    elem = {t.name: t.type.tensor_type.elem_type for t in model.graph.input}
    shapes = input_shapes(model, signature, sizes, budget)
    for name, dims in signature.seeds.items():
        shape = shapes[name]
        if dims and dims[0].expr is not None and "batch" in dims[0].expr.symbols:
            batched.add(name)
        dtype = helper.tensor_dtype_to_np_dtype(elem[name])
        if np.issubdtype(dtype, np.floating):
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            value = np.ones(shape, dtype)
        elif "mask" in name:
            value = np.ones(shape, dtype)
        elif "type" in name:
            value = np.zeros(shape, dtype)
        else:  # ids below the vocabulary, other indices below the smallest other size
            inner = [v for k, v in sizes.items() if k != "batch" and v > 0]
            high = vocab.get(name) or max(1, min(inner, default=2))
            value = rng.integers(0, high, shape).astype(dtype)
        feed[name] = value
    return feed, batched
