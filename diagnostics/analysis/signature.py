"""Read the graph's signature: which input dims are symbols, and what the export dummy was.

Every dynamic input dim is a symbol, named by its dim_param (`height`, `frames`,
`past_sequence`) or generated (`input.axis`). Text encoder inputs are the rank-2
integer inputs (`input_ids`, `attention_mask`, ...): axis 0 is `batch`, axis 1 is
`sequence`. A static size there is a finding. In a PyTorch export whose every
input is static, axis 0 of the other inputs is analysed as `batch` too: a finding
where the graph reads a batch from it (see `checker`).
For the frozen-shape analysis such a static dim is treated as the symbol it
should have been, so every node that froze it is found too. Dummy sizes come from
the extractor's metadata, else the static input dims, else `--dummy`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import onnx

from ..errors import ShapeSpecError
from ..findings import Finding, FrozenValue, SymbolInfo, TensorInfo
from .dims import Dim, Expr, lit

ROLES = ("batch", "sequence")
DEFAULT_DUMMY = {"batch": 2, "sequence": 8}
METADATA = "subgraft."
_INTEGER = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


@dataclass(frozen=True)
class Signature:
    aliases: dict[str, str]  # a text input's dim_param -> its symbol (batch_size -> batch)
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    symbols: tuple[SymbolInfo, ...]
    seeds: dict[str, list[Dim]]  # input name -> dims to start the propagation with
    dummy: dict[str, int]
    dummy_source: str
    exporter: str | None
    findings: tuple[Finding, ...]  # static-input
    batched: tuple[str, ...] = ()  # non-text inputs whose static axis 0 is analysed as batch


Expect = dict[str, tuple[int | str, ...]]  # input -> dims the user expects (a name: dynamic)


def parse_expect(text: str) -> Expect:
    """`pixel_values[batch,3,height,width];input_ids[batch,sequence]` -> {name: dims}."""
    expect: Expect = {}
    for part in text.replace(" ", "").split(";"):
        match = re.fullmatch(r"([^\[\];,]{1,200})\[([^\[\]]{0,400})\]", part)
        dims = match[2].split(",") if match and match[2] else []
        if not match or not all(re.fullmatch(r"\d{1,9}|[A-Za-z_][\w.]{0,63}", d) for d in dims):
            raise ShapeSpecError(f"bad --expect {part!r}: write NAME[dim,...];... e.g. "
                                 "pixel_values[batch,3,height,width] (a name is dynamic)")
        expect[match[1]] = tuple(int(d) if d.isdigit() else d for d in dims)
    return expect


def read_signature(model: onnx.ModelProto, dummy: dict[str, int] | None = None,
                   expect: Expect | None = None) -> Signature:
    """Args:
        dummy: sizes from `--dummy`, used when the model does not record its own.
        expect: the dims the user expects (`--expect`): a static dim where a name is expected
            is a static-input finding analysed as that symbol (torch.export specialises
            dims silently); a missing input or another rank is a signature finding.
    """
    expect = expect or {}
    metadata = {p.key: p.value for p in model.metadata_props}
    inputs = _graph_inputs(model.graph)
    text = [i for i in inputs if _is_text(i)]
    exporter = metadata.get(METADATA + "exporter") or _guess_exporter(model)
    from_pytorch = model.producer_name == "pytorch" or any(k.startswith(METADATA)
                                                           for k in metadata)
    batched = _batched(inputs, text, from_pytorch)
    names = _role_names(text)
    # --dummy may name a dim as the file does (batch_size) or as the analysis does (batch).
    dummy = {names.get(k, k): v for k, v in dummy.items()} if dummy else dummy
    dummy_sizes, dummy_source = _dummy(metadata, text, dummy, batched)
    reading = _Reading(names, {t.name for t in text}, batched, from_pytorch, dummy_sizes, dummy)
    seeds: dict[str, list[Dim]] = {}
    static: list[Finding] = []
    # Text inputs first: they give the symbols their roles and dummy sizes.
    for tensor in sorted(inputs, key=lambda t: t.name not in reading.text_names):
        seeds[tensor.name], frozen, found, wanted = _read_input(
            tensor, expect.get(tensor.name), reading)
        static += found
        if frozen:
            static.append(_static_input(tensor, frozen, wanted, metadata, text, exporter,
                                        tensor in batched))
    static += _missing_expected(expect, inputs)
    order = [t.name for t in inputs]
    static.sort(key=lambda f: order.index(f.node) if f.node in order else len(order))
    return Signature(
        names,
        tuple(_info(t) for t in inputs),
        tuple(_info(t) for t in model.graph.output),
        tuple(reading.symbols.values()),
        seeds,
        dummy_sizes,
        dummy_source,
        exporter,
        tuple(static),
        tuple(t.name for t in batched),
    )


@dataclass
class _Reading:
    """What every input's dims are read against, and the symbols found so far (the first
    input and axis to show a symbol names it)."""

    names: dict[str, str]  # dim_param -> symbol
    text_names: set[str]
    batched: list[onnx.ValueInfoProto]
    from_pytorch: bool
    dummy_sizes: dict[str, int]
    dummy: dict[str, int] | None
    symbols: dict[str, SymbolInfo] = field(default_factory=dict)

    def add(self, symbol: str, role: str | None, tensor: str, axis: int,
            size: int | None) -> Dim:
        if symbol not in self.symbols:
            self.symbols[symbol] = SymbolInfo(symbol, role, tensor, axis, size)
        return Dim(Expr.of(symbol))


def _graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    initializers = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in initializers]


def _batched(inputs: list[onnx.ValueInfoProto], text: list[onnx.ValueInfoProto],
             from_pytorch: bool) -> list[onnx.ValueInfoProto]:
    """A PyTorch export whose every input is static: axis 0 of each other input of rank >= 2
    is analysed as the batch it should have been (a finding only where the graph reads it)."""
    static_export = (from_pytorch and bool(inputs)
                     and all(isinstance(d, int) for t in inputs for d in _dims(t)))
    return [t for t in inputs if static_export and t not in text and len(_dims(t)) >= 2]


def _role_names(text: list[onnx.ValueInfoProto]) -> dict[str, str]:
    """The text inputs' dim_params -> their roles (batch_size -> batch)."""
    names: dict[str, str] = {}
    for tensor in text:
        for axis, dim in enumerate(_dims(tensor)[:2]):
            # One dim_param per role: a mask over `past_sequence + sequence` is its own symbol.
            if isinstance(dim, str) and ROLES[axis] not in names.values():
                names.setdefault(dim, ROLES[axis])
    return names


def _read_input(
    tensor: onnx.ValueInfoProto, wanted: tuple[int | str, ...] | None, reading: _Reading,
) -> tuple[list[Dim], list[FrozenValue], list[Finding], tuple[int | str, ...] | None]:
    """One input's seed dims, its static dims that should be symbols, and its signature
    findings; `wanted` comes back None where its rank is not the expected one."""
    dims = _dims(tensor)
    seed: list[Dim] = []
    frozen: list[FrozenValue] = []
    found: list[Finding] = []
    if wanted is not None and len(wanted) != len(dims):
        found.append(_unexpected(tensor.name, f"rank {len(dims)} {list(dims)}, expected "
                                 f"{len(wanted)} {list(wanted)} (--expect)"))
        wanted = None
    for axis, dim in enumerate(dims):
        hoped = wanted[axis] if wanted is not None else None
        seed_dim, frozen_value, finding = _read_dim(tensor, axis, dim, hoped, reading)
        seed.append(seed_dim)
        frozen += [frozen_value] if frozen_value is not None else []
        found += [finding] if finding is not None else []
    return seed, frozen, found, wanted


def _read_dim(
    tensor: onnx.ValueInfoProto, axis: int, dim: int | str | None, hoped: int | str | None,
    reading: _Reading,
) -> tuple[Dim, FrozenValue | None, Finding | None]:
    """One dim: a literal, or a symbol (a static one where a symbol belongs is frozen)."""
    role = ROLES[axis] if tensor.name in reading.text_names and axis < 2 else None
    if tensor in reading.batched and axis == 0:
        role = "batch"
    if isinstance(dim, int) and isinstance(hoped, str):  # static where dynamic expected
        symbol = role or reading.names.get(hoped, hoped)
        frozen = FrozenValue(axis, dim, symbol, f"{dim} where {hoped} was expected",
                             Expr.of(symbol).sympy)
        return reading.add(symbol, role, tensor.name, axis, dim), frozen, None
    finding = None
    if isinstance(hoped, int) and dim != hoped:
        finding = _unexpected(tensor.name, f"dim {axis} is {dim or '?'}, expected "
                              f"{hoped} (--expect)")
    if isinstance(dim, int) and not reading.from_pytorch:
        role = None  # tf2onnx, paddle2onnx...: a static size is theirs to choose
    if isinstance(dim, int) and role is None:
        return lit(dim), None, finding
    frozen = None
    if isinstance(dim, int):
        frozen = FrozenValue(axis, dim, role, _static_reason(dim, role, reading.dummy_sizes),
                             Expr.of(role).sympy)
        symbol = role
    elif dim is None:
        symbol = role or f"{tensor.name}.{axis}"
    else:
        symbol = reading.names.get(dim, dim)
        role = role if symbol == role else None
    size = reading.dummy_sizes.get(role) if role else (reading.dummy or {}).get(symbol)
    return reading.add(symbol, role, tensor.name, axis, size), frozen, finding


def _static_input(
    tensor: onnx.ValueInfoProto, frozen: list[FrozenValue], wanted: tuple[int | str, ...] | None,
    metadata: dict[str, str], text: list[onnx.ValueInfoProto], exporter: str | None,
    batched: bool,
) -> Finding:
    """The static-input finding of one input with frozen dims, with its likely cause."""
    only_expected = wanted is not None and not any(f.symbol in ROLES for f in frozen)
    cause = (_SPECIALISED if only_expected
             else _static_cause(metadata, frozen, text, tensor.name, exporter, batched))
    return Finding("static-input", tensor.name, "", tuple(frozen), cause)


def _missing_expected(expect: Expect, inputs: list[onnx.ValueInfoProto]) -> list[Finding]:
    """A finding for each input `--expect` names that the model does not have."""
    names_in = {t.name for t in inputs}
    return [_unexpected(name, f"no such input (the model has {', '.join(sorted(names_in))})")
            for name in expect if name not in names_in]


_SPECIALISED = (
    "static where --expect names a dynamic dim: torch.export makes a dim static when the "
    "dummy takes a branch that fixes it (a square image at the checkpoint's size) or when "
    "no dynamic shape names it; export again with a dummy of another size"
)


def _unexpected(name: str, what: str) -> Finding:
    return Finding("signature", name, "", (), f"{name}: {what}")


def _is_text(tensor: onnx.ValueInfoProto) -> bool:
    kind = tensor.type.tensor_type
    return kind.elem_type in _INTEGER and len(kind.shape.dim) == 2


def _dims(tensor: onnx.ValueInfoProto) -> list[int | str | None]:
    out: list[int | str | None] = []
    for dim in tensor.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            out.append(dim.dim_value)
        elif dim.dim_param:
            out.append(dim.dim_param)
        else:
            out.append(None)
    return out


def _info(tensor: onnx.ValueInfoProto) -> TensorInfo:
    elem = onnx.TensorProto.DataType.Name(tensor.type.tensor_type.elem_type).lower()
    return TensorInfo(tensor.name, tuple(_dims(tensor)), elem)


def _dummy(
    metadata: dict[str, str], text: list[onnx.ValueInfoProto], given: dict[str, int] | None,
    batched: list[onnx.ValueInfoProto] = (),
) -> tuple[dict[str, int], str]:
    """Sizes of the roles (batch, sequence) this model has, and where they came from."""
    if not text:
        static = {"batch": _dims(batched[0])[0]} if batched else {}
        roles = {"batch"} if batched else set()
        sizes = {**{k: v for k, v in (given or {}).items() if k in roles}, **static}
        return sizes, "static inputs" if static else "--dummy" if given else "default"
    recorded = {
        role: int(metadata[METADATA + "dummy_" + role])
        for role in ROLES
        if re.fullmatch(r"[0-9]{1,9}", metadata.get(METADATA + "dummy_" + role, ""))
    }
    if len(recorded) == 2:
        return recorded, "metadata"
    static: dict[str, int] = {}
    for tensor in text:
        for axis, dim in enumerate(_dims(tensor)[:2]):
            if isinstance(dim, int):
                static.setdefault(ROLES[axis], dim)
    if len(static) == 2:
        return static, "static inputs"
    if given:
        return {**DEFAULT_DUMMY, **static, **given}, "--dummy"
    return {**DEFAULT_DUMMY, **static}, "default"


def _static_reason(value: int, role: str, dummy: dict[str, int]) -> str:
    if value == 1:
        return f"1 = a {role} of size 1, specialised"
    if dummy.get(role) == value:
        return f"{value} = export {role}"
    return f"{value} where {role} should be dynamic"


def _static_cause(
    metadata: dict[str, str],
    frozen: list[FrozenValue],
    text: list[onnx.ValueInfoProto],
    name: str,
    exporter: str | None,
    batched: bool = False,
) -> str:
    roles = " and ".join(f.symbol or "?" for f in frozen)
    if batched:
        cause = ("every input is static: dynamic_axes keys that match no input_names (the "
                 "TorchScript exporter only warns), none given, or a dummy size specialised")
        return f"static {roles} on an input the graph reads a batch from: {cause}"
    dynamic_elsewhere = any(
        isinstance(d, str) for t in text if t.name != name for d in _dims(t)[:2]
    )
    if dynamic_elsewhere:
        cause = "other text inputs are dynamic: its dynamic_axes entry is missing or misspelled"
    elif any(f.value == 1 for f in frozen):
        cause = "a dummy of size 1 was specialised, or no dynamic axes/shapes were given"
    elif METADATA + "dynamic_axes" in metadata:
        cause = "dynamic axes were requested but not applied"
    elif exporter == "dynamo":
        cause = "torch.export specialised it (an int() taken from a size, or a guard on it)"
    elif exporter == "torchscript":
        cause = "dynamic_axes keys that match no input_names (the exporter only warns), or none"
    else:
        cause = (
            "dynamic_axes keys that match no input_names (the TorchScript exporter only warns), "
            "no dynamic axes at all, or torch.export specialising a size read by int()"
        )
    return f"static {roles} on a text input: {cause}"


def _guess_exporter(model: onnx.ModelProto) -> str | None:
    if model.producer_name == "pytorch":
        for node in model.graph.node[:50]:
            if any(p.key.startswith("pkg.torch.onnx") for p in node.metadata_props):
                return "dynamo"
        if any(n.name.startswith("/") for n in model.graph.node[:50]):
            return "torchscript"
    return None
