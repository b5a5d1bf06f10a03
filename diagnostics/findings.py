"""What `check` returns: frozen dataclasses that `report` renders and repair consumes.

A `Finding` names the node to fix, the input of that node that holds the frozen
values (`input_index`, `tensor`), each frozen position with what it should be
(`FrozenValue.symbol`, exactly as `FrozenValue.expr`), and how to compute each symbol
(`Report.symbols`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

KINDS = ("static-input", "frozen-shape", "folded-constant", "shape-conflict", "signature")


@dataclass(frozen=True)
class Source:
    """Where the node came from in PyTorch, as far as the exporter recorded it."""

    module: str | None = None  # model.encoder.layer.0.attention.self
    module_class: str | None = None  # BertSelfAttention
    location: str | None = None  # .../modeling_bert.py:123
    code: str | None = None  # the line of PyTorch code, when the exporter kept it

    def __str__(self) -> str:
        parts = [self.module or "?"]
        if self.module_class:
            parts.append(f"({self.module_class})")
        if self.location:
            parts.append(f"at {self.location}")
        return " ".join(parts) if (self.module or self.location) else "-"


@dataclass(frozen=True)
class FrozenValue:
    """One literal that should have been symbolic."""

    position: int  # the element of the shape tensor, or the axis of the constant (`part`)
    value: int
    symbol: str | None  # what it should be: "batch", "sequence", "batch*sequence"
    reason: str  # "2 = export batch"
    # The same, exact: a sympy expression over the input symbols that the repair builds.
    expr: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    node: str  # the ONNX node to fix (the input name for static-input)
    op_type: str  # "" for a graph input
    frozen: tuple[FrozenValue, ...]
    reason: str
    source: Source = field(default_factory=Source)
    input_index: int | None = None  # the input of `node` holding the frozen values
    tensor: str | None = None  # that input's tensor (a constant, or a computed shape)
    part: str = "value"  # "value": elements of `tensor`; "dim": axes of its shape
    meets: tuple[str, ...] = ()  # nodes where the frozen values met a symbolic dim

    @property
    def frozen_text(self) -> str:
        return ", ".join(f"{f.value}" + (f"->{f.symbol}" if f.symbol else "") for f in self.frozen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each frozen value's `expr` stays behind (its `symbol` is its text)."""
        data = asdict(self)
        for value in data["frozen"]:
            del value["expr"]
        return data


@dataclass(frozen=True)
class Skip:
    """A node a rule could not judge, and why (data, not an error)."""

    node: str
    op_type: str
    reason: str


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int | str | None, ...]  # int: static, str: symbolic, None: unnamed dynamic
    elem_type: str


@dataclass(frozen=True)
class SymbolInfo:
    """How to compute a symbol at run time: `Shape(input)[axis]`."""

    name: str
    role: str | None  # "batch" / "sequence" for text encoder inputs
    input: str
    axis: int
    dummy: int | None  # its size in the export dummy, when known


@dataclass(frozen=True)
class ProbeRun:
    """One shape run in onnxruntime."""

    batch: int
    sequence: int
    ok: bool
    error: str | None = None
    node: str | None = None  # the node the onnxruntime error names
    finding: int | None = None  # index into Report.findings of the finding for that node
    sizes: tuple[tuple[str, int], ...] = ()  # every symbol's size, for models that are not text
    note: str | None = None  # e.g. the sizes asked for were past the end of a position table

    @property
    def label(self) -> str:
        if self.sizes:
            return ", ".join(f"{k}={v}" for k, v in self.sizes)
        return f"{self.batch}x{self.sequence}"


@dataclass(frozen=True)
class InvarianceRun:
    """A row run alone against the same row inside a batch."""

    batch: int
    sequence: int
    row: int
    ok: bool
    max_abs: float | None = None
    error: str | None = None
    sizes: tuple[tuple[str, int], ...] = ()

    @property
    def label(self) -> str:
        if self.sizes:
            return ", ".join(f"{k}={v}" for k, v in self.sizes)
        return f"{self.batch}x{self.sequence}"


@dataclass(frozen=True)
class Probe:
    runs: tuple[ProbeRun, ...] = ()
    invariance: tuple[InvarianceRun, ...] = ()
    skipped: str | None = None  # why the probe did not run
    given: bool = False  # run on the user's inputs (--inputs), not on built ones

    @property
    def inconclusive(self) -> bool:
        """The first run (at the export sizes, or a guess at them) failed and no finding
        explains it: the probe's inputs are not ones this model takes (values that must
        agree, such as GLiNER's spans and word counts), so its unexplained failures prove
        nothing."""
        first = self.runs[0] if self.runs else None
        return first is not None and not self.given and not first.ok and first.finding is None

    @property
    def failures(self) -> int:
        """Failed runs and invariance checks; when inconclusive, only those a finding explains."""
        counted = [r for r in self.runs
                   if not r.ok and not (self.inconclusive and r.finding is None)]
        return len(counted) + sum(not r.ok for r in self.invariance)


@dataclass(frozen=True)
class Report:
    model: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    symbols: tuple[SymbolInfo, ...]
    dummy: dict[str, int]  # role -> size, e.g. {"batch": 2, "sequence": 8}
    dummy_source: str  # "metadata", "static inputs", "--dummy" or "default"
    exporter: str | None
    findings: tuple[Finding, ...]
    skipped: tuple[Skip, ...] = ()
    unhandled_ops: dict[str, int] = field(default_factory=dict)
    weights: str = "inline"  # "inline", "external" (read for the probe), "missing"
    notes: tuple[str, ...] = ()
    probe: Probe | None = None
    nodes: int = 0
    limits: dict[str, int] = field(default_factory=dict)  # symbol -> most (a table it slices)

    @property
    def ok(self) -> bool:
        return not self.findings and (self.probe is None or self.probe.failures == 0)

    @property
    def verdict(self) -> str:
        """"findings" (or probe failures), else "incomplete" when nodes were not judged or the
        probe was inconclusive, else "clean": a clean verdict only where every
        shape-consuming node was judged (and, probed, the model ran at its own sizes)."""
        if not self.ok:
            return "findings"
        inconclusive = self.probe is not None and self.probe.inconclusive
        return "incomplete" if self.skipped or inconclusive else "clean"

    # `report.open_in_netron(...)` serves the annotated model (a `NetronView`: `.url`,
    # `.stop()`): `netron_view.open_in_netron`, attached by the package, since data knows no view.
    open_in_netron: ClassVar[Any]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        probe = data.pop("probe")
        data["findings"] = [
            {**f.to_dict(), "frozen_text": f.frozen_text, "source_text": str(f.source)}
            for f in self.findings
        ]
        data["probe"] = probe["runs"] if probe else []
        data["invariance"] = probe["invariance"] if probe else []
        data["probe_skipped"] = probe["skipped"] if probe else None
        data["probe_inconclusive"] = self.probe.inconclusive if self.probe else False
        data["ok"] = self.ok
        data["verdict"] = self.verdict
        return data
