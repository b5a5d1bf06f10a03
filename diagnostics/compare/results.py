"""What `compare` returns: data only, frozen; `report.render_compare` renders it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModuleDiff:
    """One aligned module's output, ONNX against PyTorch, at the worst of the runs."""

    module: str
    module_class: str
    onnx_value: str
    max_abs: float
    relative: float  # max_abs over the reference's largest magnitude
    cosine: float
    input_max_abs: float | None  # the worst aligned input; None when none could be aligned
    agrees: bool
    # The error this module adds: its output's, less the worst error already there, at
    # its inputs or at its submodules' outputs (what they add is theirs, not this one's).
    added: float = 0.0


@dataclass(frozen=True)
class Unaligned:
    module: str
    reason: str


@dataclass(frozen=True)
class Divergence:
    module: str
    module_class: str
    onnx_nodes: tuple[str, ...]
    source: str | None  # file:line of the module's forward
    onnx_source: str | None  # file:line the exporter recorded for the nodes, if any
    max_abs: float
    relative: float
    cosine: float
    input_max_abs: float | None
    cause: str | None


@dataclass(frozen=True)
class CompareReport:
    model: str
    reference: str
    runs: tuple[str, ...]  # "2x13", or the --inputs file names
    atol: float
    rtol: float
    modules: tuple[ModuleDiff, ...]  # in forward-completion order
    unaligned: tuple[Unaligned, ...] = ()
    first_divergence: Divergence | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.first_divergence is None and all(m.agrees for m in self.modules)

    def ranked(self) -> list[ModuleDiff]:
        """Modules by the error each adds, largest first (ties by execution order)."""
        order = {m.module: i for i, m in enumerate(self.modules)}
        return sorted(self.modules, key=lambda m: (-round(m.added, 9), order[m.module]))

    def to_dict(self) -> dict:
        """The `--json` object: `first_divergence` (or None) and `modules` lead."""
        return {
            "first_divergence": asdict(self.first_divergence) if self.first_divergence else None,
            "modules": [asdict(m) for m in self.modules],
            "ranked_by_added": [m.module for m in self.ranked()],
            "unaligned": [asdict(u) for u in self.unaligned],
            "ok": self.ok,
            "model": self.model,
            "reference": self.reference,
            "runs": list(self.runs),
            "atol": self.atol,
            "rtol": self.rtol,
            "notes": list(self.notes),
        }
