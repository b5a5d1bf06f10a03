"""What `repair` returns: frozen dataclasses that `report` renders; nothing here prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from ..findings import Finding, Probe


@dataclass(frozen=True)
class Change:
    """One rewrite: the node (or input) changed, what was done, the shape values before/after."""

    finding: int  # index into RepairReport.findings
    node: str
    op_type: str
    action: str  # "0 copies the input dim", "Range over sequence", ...
    before: str
    after: str
    added: tuple[str, ...] = ()  # names of the nodes inserted for it


@dataclass(frozen=True)
class Refusal:
    """A finding left as it was, and why no rewrite could be proved right."""

    finding: int
    node: str
    op_type: str
    kind: str
    reason: str


@dataclass(frozen=True)
class RepairResult:
    """The pass' result: the repaired model and what happened to each finding."""

    model: onnx.ModelProto
    modified: bool
    changes: tuple[Change, ...]
    refusals: tuple[Refusal, ...]


@dataclass(frozen=True)
class Comparison:
    """One output of the original and repaired models at the same inputs."""

    batch: int
    sequence: int
    output: str
    max_abs: float
    max_rel: float  # max_abs / max |original|
    ok: bool

    @property
    def label(self) -> str:
        return f"{self.batch}x{self.sequence}" if self.sequence else f"batch {self.batch}"


@dataclass(frozen=True)
class Verification:
    compared: tuple[Comparison, ...] = ()  # at the export dummy shape
    before: Probe | None = None  # the original model at the probe shapes
    after: Probe | None = None  # the repaired model at the same shapes
    skipped: str | None = None  # why verification did not run
    notes: tuple[str, ...] = ()

    @property
    def failures(self) -> list[str]:
        """What failed, one line each (empty when everything passed)."""
        out = [
            f"{c.output} at {c.label} changed: max abs {c.max_abs:.2e}"
            for c in self.compared
            if not c.ok
        ]
        if self.skipped:
            out.append(f"not verified: {self.skipped}")
        elif not self.compared:
            out.append("not compared with the original at any shape")
        if self.after is not None:
            if self.after.skipped:
                out.append(f"probe skipped: {self.after.skipped}")
            out += [
                f"fails at {r.label}: {r.node or r.error}"
                for r in self.after.runs
                if not r.ok
            ]
            out += [
                f"batch invariance fails at {r.label} row {r.row}"
                for r in self.after.invariance
                if not r.ok
            ]
        return out

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class RepairReport:
    model: str
    output: str | None  # where the repaired model was written (None: not written)
    dry_run: bool
    dummy: dict[str, int]
    findings: tuple[Finding, ...]
    changes: tuple[Change, ...]
    refusals: tuple[Refusal, ...]
    remaining: tuple[Finding, ...]  # findings of `check` on the repaired graph
    verification: Verification | None
    repaired: onnx.ModelProto | None = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        if not self.findings:
            return True  # nothing to repair
        verified = self.verification.ok if self.verification is not None else self.dry_run
        return not self.refusals and not self.remaining and verified

    def to_dict(self) -> dict[str, Any]:
        data = {
            "model": self.model,
            "output": self.output,
            "dry_run": self.dry_run,
            "dummy": self.dummy,
            "findings": [{**f.to_dict(), "frozen_text": f.frozen_text} for f in self.findings],
            "changes": [asdict(c) for c in self.changes],
            "refusals": [asdict(r) for r in self.refusals],
            "remaining": [f.to_dict() for f in self.remaining],
            "verification": None,
            "notes": list(self.notes),
            "ok": self.ok,
        }
        if self.verification is not None:
            v = self.verification
            data["verification"] = {
                "compared": [asdict(c) for c in v.compared],
                "before": asdict(v.before) if v.before else None,
                "after": asdict(v.after) if v.after else None,
                "skipped": v.skipped,
                "notes": list(v.notes),
                "failures": v.failures,
                "ok": v.ok,
            }
        return data
